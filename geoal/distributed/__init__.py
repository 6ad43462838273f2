"""Scoring and whole-scene detection on many machines: a Ray backend, and shards without Ray.

- ``score_project_ray`` / ``predict_scenes_ray`` (``--engine ray``): an actor per
  GPU (or CPU slot) loads the model once, reads its chips' windows itself and
  returns small records; the driver writes them to the store in transactions,
  with bounded work in flight. Ray is an optional extra (``pip install
  'geoal[ray]'``), imported only when used.
- ``score_shard`` / ``merge_shards`` (``--shard I/N``, ``geoal merge-shards``):
  for schedulers without Ray, such as SLURM job arrays.

Importing this package imports neither Ray nor torch.
"""

from geoal.distributed.cluster import RayOptions
from geoal.distributed.engine import score_project_ray
from geoal.distributed.predict import predict_scenes_ray
from geoal.distributed.shards import merge_shards, score_shard
from geoal.distributed.work import Shard, parse_shard

__all__ = [
    "RayOptions",
    "Shard",
    "merge_shards",
    "parse_shard",
    "predict_scenes_ray",
    "score_project_ray",
    "score_shard",
]
