"""geoal.uncertainty."""
