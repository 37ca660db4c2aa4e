"""Per-platform renderers of the instance description."""
