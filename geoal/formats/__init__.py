"""geoal.formats: annotation formats as pure to_*/from_* functions over plain records.

Exporters take chips (:class:`~geoal.raster.chip.Chip`), boxes per chip id (:class:`Boxes`, chip pixels)
and the project's classes, and return plain dicts / strings; ``write_json`` /
``write_text`` write them atomically. Importers take parsed content and return an
:class:`ImportResult` (labels per chip, :class:`Problem` list); they report bad content
instead of raising, and raise ``FormatError`` only for an unreadable file.

    data = to_coco(chips, boxes, classes); write_json("round3.json", data)
    result = from_coco(read_json("round3.json"), chips_by_id, classes, "round3.json")
"""

from geoal.formats._check import class_lookup
from geoal.formats.coco import category_id, from_coco, to_coco
from geoal.formats.geojson import auto_crs, from_geojson, read_geojson, to_geojson
from geoal.formats.io import read_json, write_bytes, write_json, write_text
from geoal.formats.labelstudio import from_labelstudio, labelstudio_config, to_labelstudio
from geoal.formats.records import Boxes, ImportResult, Problem
from geoal.formats.yolo import from_yolo_labels, to_yolo_labels, write_yolo_dataset
from geoal.raster.chip import Chip, chip_file_name

__all__ = [
    "Boxes",
    "Chip",
    "ImportResult",
    "Problem",
    "auto_crs",
    "category_id",
    "chip_file_name",
    "class_lookup",
    "from_coco",
    "from_geojson",
    "from_labelstudio",
    "from_yolo_labels",
    "labelstudio_config",
    "read_geojson",
    "read_json",
    "to_coco",
    "to_geojson",
    "to_labelstudio",
    "to_yolo_labels",
    "write_bytes",
    "write_json",
    "write_text",
    "write_yolo_dataset",
]
