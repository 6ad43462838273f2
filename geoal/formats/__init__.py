"""geoal.formats."""
