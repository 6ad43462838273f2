"""geoal.raster."""
