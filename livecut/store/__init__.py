"""Durable segment files and the SQLite index over them."""
