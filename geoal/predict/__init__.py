"""Whole-scene detection: sliced inference over chips and cross-chip merging."""
