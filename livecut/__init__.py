"""livecut: record live HLS streams and cut clips by wall-clock time."""

__version__ = "0.1.0"
