"""What analysis jobs deliver, as the API and the webhooks show it: frozen records in,
JSON out, every link absolute."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from livecut.api.views import absolute
from livecut.store.analysis import AnalysisJobRow


@dataclass(frozen=True, kw_only=True, slots=True)
class ShotsJobBody:
    """GET /v1/sessions/{id}/shots and /v1/clips/{id}/shots, and shots.ready's data."""

    id: str
    status: str  # pending | processing | completed | failed
    progress: float | None
    stream: str
    session: str | None
    clip: str | None
    from_ms: int
    to_ms: int
    shots: int | None  # how many, once completed
    shots_manifest_url: str | None
    error: str | None
    created_ms: int
    updated_ms: int
    callback_url: str | None = None  # where shots.ready is sent, signed, besides endpoints
    callback_id: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class ShotEntry:
    start_time: float  # seconds from the start of the session or clip
    start_ms: int
    end_ms: int
    kind: str  # start (the range's first shot), cut or dissolve: how the shot began
    score: dict[str, float]  # the transition's score, part by part
    shot_preview_image_url: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ShotsManifest:
    id: str
    stream: str
    session: str | None
    clip: str | None
    from_ms: int
    to_ms: int
    shots: list[ShotEntry]


@dataclass(frozen=True, kw_only=True, slots=True)
class HighlightEntry:
    start_ms: int
    end_ms: int
    label: str | None
    score: float | None  # 0-1; None for windows the caller gave
    parts: dict[str, dict[str, float]] | None  # name -> {value, weight}


@dataclass(frozen=True, kw_only=True, slots=True)
class HighlightsBody:
    """GET /v1/highlights/{id}, and highlights.ready's data."""

    id: str
    status: str
    progress: float | None
    stream: str
    session: str | None
    from_ms: int
    to_ms: int
    instruction: str | None
    clip: str | None  # the one clip job that cuts every highlight as a window
    clip_url: str | None
    highlights: list[HighlightEntry] | None
    error: str | None
    created_ms: int
    updated_ms: int
    callback_url: str | None = None  # the request's: highlights.ready goes there as well
    callback_id: str | None = None


def as_json(body: object) -> dict[str, Any]:
    assert dataclasses.is_dataclass(body) and not isinstance(body, type)
    return dataclasses.asdict(body)


def shots_job_body(job: AnalysisJobRow, *, base_url: str, progress: float | None) -> ShotsJobBody:
    shots = (job.result or {}).get("shots")
    return ShotsJobBody(
        id=job.id,
        status=job.state,
        progress=1.0 if job.state == "completed" else progress,
        stream=job.stream_id,
        session=job.session_id,
        clip=job.clip_id,
        from_ms=job.from_ms,
        to_ms=job.to_ms,
        shots=len(shots) if isinstance(shots, list) else None,
        shots_manifest_url=(
            absolute(base_url, f"/v1/shots/{job.id}/manifest.json")
            if job.state == "completed"
            else None
        ),
        error=job.error,
        created_ms=job.created_ms,
        updated_ms=job.updated_ms,
        callback_url=_text(job.options.get("callback_url")),
        callback_id=_text(job.options.get("callback_id")),
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def shots_manifest(job: AnalysisJobRow, *, base_url: str) -> ShotsManifest:
    shots = (job.result or {}).get("shots") or []
    return ShotsManifest(
        id=job.id,
        stream=job.stream_id,
        session=job.session_id,
        clip=job.clip_id,
        from_ms=job.from_ms,
        to_ms=job.to_ms,
        shots=[
            ShotEntry(
                start_time=round((int(s["start_ms"]) - job.zero_ms) / 1000, 3),
                start_ms=int(s["start_ms"]),
                end_ms=int(s["end_ms"]),
                kind=str(s["kind"]),
                score=dict(s["score"]),
                shot_preview_image_url=absolute(base_url, f"/v1/shots/{job.id}/{n}.webp"),
            )
            for n, s in enumerate(shots)
        ],
    )


def highlights_body(
    job: AnalysisJobRow, *, base_url: str, progress: float | None
) -> HighlightsBody:
    found = (job.result or {}).get("highlights")
    # The request's callback rides with its clip's options (the clip reports there too).
    clip_options = job.options.get("clip")
    meta = clip_options.get("meta") if isinstance(clip_options, dict) else None
    callback = meta if isinstance(meta, dict) else {}
    return HighlightsBody(
        id=job.id,
        status=job.state,
        progress=1.0 if job.state == "completed" else progress,
        stream=job.stream_id,
        session=job.session_id,
        from_ms=job.from_ms,
        to_ms=job.to_ms,
        instruction=job.options.get("instruction"),
        clip=job.clip_id,
        clip_url=None if job.clip_id is None else absolute(base_url, f"/v1/clips/{job.clip_id}"),
        highlights=(
            None
            if not isinstance(found, list)
            else [
                HighlightEntry(
                    start_ms=int(h["start_ms"]),
                    end_ms=int(h["end_ms"]),
                    label=h.get("label"),
                    score=h.get("score"),
                    parts=h.get("parts"),
                )
                for h in found
            ]
        ),
        error=job.error,
        created_ms=job.created_ms,
        updated_ms=job.updated_ms,
        callback_url=_text(callback.get("callback_url")),
        callback_id=_text(callback.get("callback_id")),
    )
