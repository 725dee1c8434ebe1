"""SQL of watermark images uploaded for renders (the images live beside the index)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

_SCHEMA = """
CREATE TABLE IF NOT EXISTS overlays (
    id TEXT PRIMARY KEY,
    name TEXT,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    size_bytes INTEGER NOT NULL,
    created_ms INTEGER NOT NULL
);
"""


@dataclass(frozen=True, kw_only=True, slots=True)
class OverlayRow:
    id: str
    name: str | None
    width: int
    height: int
    size_bytes: int  # of the stored PNG
    created_ms: int

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "width": self.width,
            "height": self.height,
            "size_bytes": self.size_bytes,
            "created_ms": self.created_ms,
            "url": f"/v1/overlays/{self.id}/image.png",
        }


class OverlayIndex:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        db.executescript(_SCHEMA)

    def add(self, row: OverlayRow) -> None:
        self._db.execute(
            "INSERT INTO overlays (id, name, width, height, size_bytes, created_ms) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (row.id, row.name, row.width, row.height, row.size_bytes, row.created_ms),
        )

    def get(self, overlay_id: str) -> OverlayRow | None:
        found = self._db.execute("SELECT * FROM overlays WHERE id = ?", (overlay_id,)).fetchone()
        return None if found is None else _row(found)

    def all(self) -> list[OverlayRow]:
        rows = self._db.execute("SELECT * FROM overlays ORDER BY created_ms, id").fetchall()
        return [_row(r) for r in rows]

    def delete(self, overlay_id: str) -> bool:
        return self._db.execute("DELETE FROM overlays WHERE id = ?", (overlay_id,)).rowcount > 0


def _row(found: sqlite3.Row) -> OverlayRow:
    return OverlayRow(
        id=found["id"],
        name=found["name"],
        width=found["width"],
        height=found["height"],
        size_bytes=found["size_bytes"],
        created_ms=found["created_ms"],
    )
