"""Clip planning (pure) and clip jobs."""
