"""``geoal demo``: the pipeline end to end on a built-in synthetic scene, offline.

The demo grows with the pipeline: it runs every stage geoal has.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

from geoal.errors import ProjectError
from geoal.project import init_project
from geoal.synthetic import CLASSES, write_scene

DEMO_MARK = ".geoal-demo"


def run_demo(out: Path, *, seed: int = 0, progress: bool = True) -> Iterator[str]:
    """Build a synthetic scene, create a project in ``out`` and run the stages; yields log lines."""
    from geoal.pipeline.catalog import project_status, tile_scenes, write_chip_map

    out = Path(out)
    if out.exists():
        if not (out / DEMO_MARK).exists():
            raise ProjectError(f"{out}: exists and is not a previous demo; choose another --out")
        shutil.rmtree(out)
    scenes_dir = out / "scenes"
    scenes_dir.mkdir(parents=True)
    (out / DEMO_MARK).write_text("made by geoal demo; safe to delete\n")
    scene = scenes_dir / "demo_harbour_uint16.tif"
    boxes = write_scene(
        scene,
        width=1600,
        height=1200,
        bands=3,
        dtype="uint16",
        crs="EPSG:32631",
        nodata=0,
        border=40,
        overviews=True,
        objects=60,
        seed=seed,
    )
    yield f"wrote synthetic scene {scene} (1600 x 1200, uint16, EPSG:32631, {len(boxes)} objects)"
    project = init_project(out / "project", list(CLASSES), name="demo")
    with project:
        tiling = project.config.tiling
        report = tile_scenes(project, [str(scene)], tiling, progress=progress)
        for row in report.added:
            yield (
                f"tiled scene {row['scene_id']}: {row['chips']} chips "
                f"({row['skipped_nodata']} skipped as nodata)"
            )
        layers = write_chip_map(project, out / "chips.gpkg")
        yield f"wrote chip map {out / 'chips.gpkg'} ({', '.join(layers)})"
        counts = project_status(project)["counts"]
        yield "status: " + "  ".join(f"{k}: {v}" for k, v in counts.items())
