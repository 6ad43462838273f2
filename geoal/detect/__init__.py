"""geoal.detect."""
