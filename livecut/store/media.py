"""Where media lives: files under the data directory, or objects in an S3-compatible bucket
with local copies for the readers that open files (s3media.py, imported only when the
config asks for it: the bucket's client weighs some 15 MB that a local node need not).

The store (store.py) writes, publishes, removes and reconciles through one of these, and
readers ask it for local paths inside `fetched(relpaths)`. Relpaths are the same in both:
"streams/<stream>/<session>/<rendition>/<name>" for segments and init sections,
"clips/<clip>/<name>" for a clip's outputs, "analysis/<job>/<n>.webp" for a shots job's
previews (each a folder under the data directory, or keys under the bucket's prefix),
and "overlays/<overlay>.png" for an uploaded watermark image.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Final, Protocol

from livecut.store import files

__all__ = [
    "CACHE_DIR",
    "ORPHAN_AGE_S",
    "LocalMedia",
    "Media",
    "OwnerExists",
    "Reads",
    "clip_prefix",
    "clip_relpath",
    "job_prefix",
    "overlay_relpath",
    "preview_relpath",
]

log = logging.getLogger(__name__)

# Whether what a folder of media belongs to (a clip, an analysis job: by the folder's
# name, its id) still exists in the index.
OwnerExists = Callable[[str], Awaitable[bool]]

# The read cache's folder in the data directory (S3 mode).
CACHE_DIR: Final = "cache"
# Start-up reconciliation deletes an object no index row names only once it is this old:
# with many nodes, another node may have PUT it and not yet committed its row.
ORPHAN_AGE_S: Final = 3600.0


def clip_prefix(clip_id: str) -> str:
    """The folder of a clip's output files: "clips/<clip>/"."""
    return f"clips/{files.safe_name(clip_id)}/"


def clip_relpath(clip_id: str, name: str) -> str:
    """Where a clip's output file is kept: "clips/<clip>/<name>"."""
    return clip_prefix(clip_id) + files.safe_name(name)


def job_prefix(job_id: str) -> str:
    """The folder of an analysis job's files (a shots job's previews): "analysis/<job>/"."""
    return f"analysis/{files.safe_name(job_id)}/"


def preview_relpath(job_id: str, number: int) -> str:
    """Where the preview of a shots job's shot `number` is kept: "analysis/<job>/<n>.webp"."""
    return f"{job_prefix(job_id)}{number}.webp"


def overlay_relpath(overlay_id: str) -> str:
    """Where an uploaded watermark image (an RGBA PNG) is kept: "overlays/<overlay>.png"."""
    return f"overlays/{files.safe_name(overlay_id)}.png"


class Reads:
    """A path_of for code that resolves every path before it opens any (the remuxer's
    runs): each relpath resolved is noted, so that all can be fetched first, together."""

    def __init__(self, path_of: Callable[[str], Path]) -> None:
        self._path_of = path_of
        self._relpaths: dict[str, None] = {}

    def __call__(self, relpath: str) -> Path:
        self._relpaths[relpath] = None
        return self._path_of(relpath)

    @property
    def relpaths(self) -> list[str]:
        return list(self._relpaths)


class Media(Protocol):
    """What the store needs of a media backend."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def path(self, relpath: str) -> Path:
        """Where a reader opens the file (inside `fetched`, for a remote backend)."""
        ...

    async def write(self, relpath: str, data: bytes) -> None:
        """Store data whole at relpath, or raise OSError with nothing left behind."""
        ...

    async def publish(self, staged: Path, relpath: str) -> None:
        """Store a staged, durable file at relpath; on OSError the staged file is still
        the caller's to discard."""
        ...

    async def remove(self, relpaths: list[str]) -> None:
        """Let media go whose rows are gone; failures are counted and logged, never raised
        (what is left is an orphan that start-up reconciliation finds)."""
        ...

    def fetched(self, relpaths: Iterable[str]) -> AbstractAsyncContextManager[None]:
        """Keep local files for these relpaths while the block runs."""
        ...

    async def reconcile(self, known: set[str], now_s: float) -> list[str]:
        """Start-up: remove stored media no index row names; returns what went."""
        ...

    async def reconcile_folders(self, top: str, exists: OwnerExists, now_s: float) -> list[str]:
        """Start-up: remove the folders under `top` ("clips/", "analysis/"), or the files
        ("overlays/": by name less its suffix), whose owner no longer exists; returns what
        went."""
        ...

    async def keep_folder(self, prefix: str) -> None:
        """The files written to the data directory's folder at `prefix` ("clips/<clip>/",
        "analysis/<job>/") are final: make them servable from any node."""
        ...

    async def remove_folder(self, prefix: str) -> None:
        """Remove a folder's files (local, and stored for every node); never raises."""
        ...


class LocalMedia:
    """Files under the data directory: written to a temporary name, fsynced and renamed."""

    def __init__(self, root: Path) -> None:
        self.root = root

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def path(self, relpath: str) -> Path:
        return self.root / relpath

    async def write(self, relpath: str, data: bytes) -> None:
        # One thread hop for write, fsync, rename and the folder's fsync: cheaper than
        # four aiofiles hops, and the file is never half-visible to the loop.
        await asyncio.to_thread(files.write_atomic, self.root, relpath, data)

    async def publish(self, staged: Path, relpath: str) -> None:
        await asyncio.to_thread(files.publish, self.root, staged, relpath)

    async def remove(self, relpaths: list[str]) -> None:
        # One thread hop for the whole batch: cheaper than an aiofiles call per file.
        await asyncio.to_thread(files.remove_and_prune, self.root, relpaths)

    def fetched(self, relpaths: Iterable[str]) -> AbstractAsyncContextManager[None]:
        return contextlib.nullcontext()

    async def reconcile(self, known: set[str], now_s: float) -> list[str]:
        return await asyncio.to_thread(files.sweep_orphans, self.root, known)

    async def reconcile_folders(self, top: str, exists: OwnerExists, now_s: float) -> list[str]:
        return []  # a deleted clip's or job's folder went with it

    async def keep_folder(self, prefix: str) -> None:
        pass  # served from the folder it was written to

    async def remove_folder(self, prefix: str) -> None:
        await asyncio.to_thread(shutil.rmtree, self.root / prefix, True)
