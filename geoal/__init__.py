"""geoal: active learning for object detection in satellite and aerial imagery.

Importing geoal does nothing but define things: torch, ultralytics and ray are
imported lazily inside the functions that need them.
"""

__version__ = "0.1.0"
