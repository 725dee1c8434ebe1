"""PyAV: probing segments, remuxing clips, synthetic test media."""
