"""geoal.select."""
