"""What a re-read config changes: streams to start, stop or restart, keys that need a restart."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from livecut.config import Config, StreamConfig

__all__ = ["ReloadOutcome", "ReloadPlan", "plan_reload"]

ReloadResult = Literal["applied", "partial", "refused"]
RELOAD_RESULTS: tuple[ReloadResult, ...] = ("applied", "partial", "refused")

# Stream fields a recorder reads when it starts: a change replaces that stream's recorder.
# Others (retention, playback_id, shots) take effect without touching it.
_RECORDER_FIELDS = frozenset({"url", "headers", "renditions", "session_gap_s"})
# Sections the daemon reads once at start-up (sockets, paths, workers, clients).
_FIXED_SECTIONS = ("server", "clips", "ingest", "webhooks", "log", "cluster")


@dataclass(frozen=True, kw_only=True, slots=True)
class ReloadPlan:
    """The difference between the running config and a newly read one."""

    config: Config  # the config to run: new streams, the running fixed sections
    started: tuple[StreamConfig, ...]  # recorders to start (new or newly enabled)
    stopped: tuple[str, ...]  # stream ids whose recorders stop (removed or disabled)
    restarted: tuple[StreamConfig, ...]  # recorders to replace (URL, headers, renditions...)
    updated: tuple[str, ...]  # stream ids changed in ways their recorders do not read
    needs_restart: tuple[str, ...]  # key paths that changed and wait for a daemon restart
    shots: tuple[str, ...]  # stream ids whose live shot detection stops and/or (re)starts

    @property
    def changes_anything(self) -> bool:
        return bool(self.started or self.stopped or self.restarted or self.updated)


@dataclass(frozen=True, kw_only=True, slots=True)
class ReloadOutcome:
    """The last reload, as `/healthz` shows it."""

    at_ms: int
    result: ReloadResult
    errors: tuple[str, ...] = ()  # why a config was refused; each names its key
    needs_restart: tuple[str, ...] = ()
    started: tuple[str, ...] = ()
    stopped: tuple[str, ...] = ()
    restarted: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {
            "at_ms": self.at_ms,
            "result": self.result,
            "errors": list(self.errors),
            "needs_restart": list(self.needs_restart),
            "streams": {
                "started": list(self.started),
                "stopped": list(self.stopped),
                "restarted": list(self.restarted),
                "updated": list(self.updated),
            },
        }

    def summary(self) -> str:
        if self.result == "refused":
            return f"config refused ({len(self.errors)} error(s)), the running one is kept"
        parts = [
            f"{len(ids)} {what}"
            for what, ids in (
                ("started", self.started),
                ("stopped", self.stopped),
                ("restarted", self.restarted),
                ("updated", self.updated),
            )
            if ids
        ]
        text = "config reloaded: " + (", ".join(parts) + " stream(s)" if parts else "no change")
        if self.needs_restart:
            text += "; needs a restart: " + ", ".join(self.needs_restart)
        return text


def plan_reload(running: Config, new: Config) -> ReloadPlan:
    """Compare configs; fixed sections keep their running values and are listed instead."""
    old_streams = {s.id: s for s in running.streams}
    new_streams = {s.id: s for s in new.streams}
    started: list[StreamConfig] = []
    stopped: list[str] = []
    restarted: list[StreamConfig] = []
    updated: list[str] = []
    for stream_id, before in old_streams.items():
        if stream_id not in new_streams and before.enabled:
            stopped.append(stream_id)
    for stream_id, after in new_streams.items():
        before_or_none = old_streams.get(stream_id)
        if before_or_none == after:
            continue
        if before_or_none is None:
            if after.enabled:
                started.append(after)
            continue
        before = before_or_none
        if before.enabled and not after.enabled:
            stopped.append(stream_id)
        elif after.enabled and not before.enabled:
            started.append(after)
        elif after.enabled and _changed_fields(before, after) & _RECORDER_FIELDS:
            restarted.append(after)
        else:
            updated.append(stream_id)
    shots = _shot_changes(running.streams, new.streams, {s.id for s in restarted})
    needs_restart = [
        key
        for section in _FIXED_SECTIONS
        for key in _changed_keys(section, getattr(running, section), getattr(new, section))
    ]
    # Where media lives is fixed too (the floor's keys apply at once): the backend, and
    # the bucket's client and cache, are set up at start.
    storage = new.storage
    if (running.storage.backend, running.storage.s3) != (storage.backend, storage.s3):
        if running.storage.backend != storage.backend:
            needs_restart.append("storage.backend")
        if running.storage.s3 is not None and storage.s3 is not None:
            needs_restart += _changed_keys("storage.s3", running.storage.s3, storage.s3)
        elif running.storage.s3 != storage.s3:
            needs_restart.append("storage.s3")
        storage = dataclasses.replace(
            storage, backend=running.storage.backend, s3=running.storage.s3
        )
    fixed = {section: getattr(running, section) for section in _FIXED_SECTIONS}
    return ReloadPlan(
        config=dataclasses.replace(new, storage=storage, **fixed),
        started=tuple(started),
        stopped=tuple(stopped),
        restarted=tuple(restarted),
        updated=tuple(updated),
        needs_restart=tuple(dict.fromkeys(needs_restart)),
        shots=tuple(shots),
    )


def _shot_changes(
    before: tuple[StreamConfig, ...], after: tuple[StreamConfig, ...], restarted: set[str]
) -> list[str]:
    """Streams whose live shot detection starts, stops, or follows a restarted recorder."""
    was = {s.id for s in before if s.enabled and s.shots}
    now = {s.id for s in after if s.enabled and s.shots}
    return sorted((was ^ now) | (now & restarted))


def _changed_fields(before: object, after: object) -> set[str]:
    return {
        f.name
        for f in dataclasses.fields(before)  # type: ignore[arg-type]
        if getattr(before, f.name) != getattr(after, f.name)
    }


def _changed_keys(section: str, before: object, after: object) -> list[str]:
    """Config key paths ("server.listen", "clips.keep") of the fields that differ."""
    return [f"{section}.{_key_of(name)}" for name in sorted(_changed_fields(before, after))]


def _key_of(field_name: str) -> str:
    if field_name in ("listen_host", "listen_port"):
        return "listen"
    return field_name.removesuffix("_ms").removesuffix("_s")
