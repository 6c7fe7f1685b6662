"""YAML presets, one per task."""
