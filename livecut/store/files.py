"""Segment and clip files under the data directory: atomic writes, layout, orphan sweep."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from livecut import metrics

log = logging.getLogger(__name__)

TMP_SUFFIX = ".part"
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


def safe_name(name: str) -> str:
    """A path component that cannot climb out of its folder."""
    cleaned = _SAFE.sub("_", name).lstrip(".")
    return cleaned or "_"


def segment_relpath(stream_id: str, session_id: str, rendition: str, name: str) -> str:
    return "/".join(
        ("streams", safe_name(stream_id), safe_name(session_id), safe_name(rendition), name)
    )


def write_atomic(root: Path, relpath: str, data: bytes) -> None:
    """Write, fsync, rename, fsync the folder: after this returns the file is durable.

    Blocking; call it from a worker thread. A failed write (a full disk) removes its
    temporary file before raising; a crash leaves at most a `.part` file, which
    start-up reconciliation removes.
    """
    tmp = (root / relpath).with_name(Path(relpath).name + TMP_SUFFIX)
    write_durable(tmp, data)
    try:
        publish(root, tmp, relpath)
    except BaseException:
        remove_quietly(tmp)
        raise


# New segments are written here first, then moved into their session's folder once the
# session they belong to is settled (in commit order). Under streams/, so start-up
# reconciliation sweeps away whatever a crash left in it.
INCOMING = "streams/.incoming"


def write_durable(path: Path, data: bytes | memoryview) -> None:
    """Write and fsync a new file that nothing reads until publish() moves it into place.

    Blocking; call it from a worker thread. A failed write (a full disk) removes the
    file before raising.
    """
    try:
        try:
            fh = open(path, "wb")  # noqa: SIM115 - closed below, on every path
        except FileNotFoundError:
            # First file of its folder, or the folder was just emptied and pruned.
            path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(path, "wb")  # noqa: SIM115
        with fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        remove_quietly(path)
        raise


def publish(root: Path, staged: Path, relpath: str) -> None:
    """Move a durable staged file to root/relpath and fsync its folder: after this
    returns the file is there for good. Blocking; same file system (a rename)."""
    final = root / relpath
    move_into(staged, final)
    dir_fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def move_into(source: Path, dest: Path) -> None:
    """Rename source to dest, making dest's folder first if it is missing (tried only
    after the rename fails: the folder is there almost always). Same file system."""
    try:
        os.replace(source, dest)
    except FileNotFoundError:
        if not source.exists():
            raise
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, dest)


def prune_empty_folders(root: Path, relpaths: list[str]) -> None:
    """Remove the folders these files were in, and their parents, once they are empty
    (never root/streams or root/clips themselves)."""
    stop = {root, root / "streams", root / "clips"}
    for folder in sorted({(root / r).parent for r in relpaths}, key=lambda f: -len(f.parts)):
        while folder not in stop and root in folder.parents:
            try:
                folder.rmdir()
            except FileNotFoundError:
                pass  # pruned already: its parent may still be empty
            except OSError:
                break  # not empty: neither are its parents
            folder = folder.parent


def remove_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        metrics.STORAGE_ERRORS.labels("remove").inc()
        log.warning("could not remove %s: %s", path, exc)


def remove_and_prune(root: Path, relpaths: list[str]) -> None:
    """Remove files under root and the folders they leave empty. Blocking."""
    for relpath in relpaths:
        remove_quietly(root / relpath)
    prune_empty_folders(root, relpaths)


def sweep_orphans(root: Path, known: set[str]) -> list[str]:
    """Remove media files under root/streams that no index row names; returns what went.

    Blocking; runs once at start-up before ingest begins, so nothing is being written.
    """
    removed: list[str] = []
    base = root / "streams"
    if not base.is_dir():
        return removed
    for dirpath, _dirs, files in os.walk(base):
        for name in files:
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            if rel not in known:
                remove_quietly(full)
                removed.append(rel)
    # Empty folders left behind by retention or by the sweep itself.
    for dirpath, _dirs, _files in sorted(os.walk(base), key=lambda w: -len(w[0])):
        if dirpath != str(base) and not os.listdir(dirpath):
            os.rmdir(dirpath)
    return removed
