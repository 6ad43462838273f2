"""Packaged configs: default.yaml and imagery profiles."""
