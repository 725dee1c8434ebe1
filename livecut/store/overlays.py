"""SQL of watermark images uploaded for renders (each image is stored with the media, at
overlays/<id>.png: under the data directory, or in the bucket)."""

from __future__ import annotations

from dataclasses import dataclass

from livecut.store.sql import Row, Sql


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
    def __init__(self, sql: Sql) -> None:
        self._sql = sql

    async def add(self, row: OverlayRow) -> None:
        await self._sql.execute(
            "INSERT INTO overlays (id, name, width, height, size_bytes, created_ms) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (row.id, row.name, row.width, row.height, row.size_bytes, row.created_ms),
        )

    async def get(self, overlay_id: str) -> OverlayRow | None:
        found = await self._sql.fetchone("SELECT * FROM overlays WHERE id = ?", (overlay_id,))
        return None if found is None else _row(found)

    async def all(self) -> list[OverlayRow]:
        rows = await self._sql.fetchall("SELECT * FROM overlays ORDER BY created_ms, id")
        return [_row(r) for r in rows]

    async def delete(self, overlay_id: str) -> bool:
        return await self._sql.execute("DELETE FROM overlays WHERE id = ?", (overlay_id,)) > 0


def _row(found: Row) -> OverlayRow:
    return OverlayRow(
        id=found["id"],
        name=found["name"],
        width=found["width"],
        height=found["height"],
        size_bytes=found["size_bytes"],
        created_ms=found["created_ms"],
    )
