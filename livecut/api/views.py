"""How clips and sessions look in JSON: shared by the API and the webhooks it sends."""

from __future__ import annotations

from livecut.store.records import ClipRow, SessionRow


def absolute(base_url: str, path: str) -> str:
    """A root-relative API path under the public base URL (which may carry a path prefix)."""
    return path if "://" in path else base_url.rstrip("/") + path


def clip_json(
    clip: ClipRow,
    *,
    base_url: str,
    sessions: list[str] | None = None,
    progress: float | None = None,
) -> dict[str, object]:
    options = clip.options or {}
    meta = options.get("meta") if isinstance(options.get("meta"), dict) else {}
    assert isinstance(meta, dict)
    body: dict[str, object] = {
        "id": clip.id,
        "name": clip.name,
        "stream": clip.stream_id,
        "session": clip.session_id,
        "sessions": sessions if sessions is not None else _sessions(clip),
        "state": clip.state,
        "progress": 1.0 if clip.state == "ready" else progress,
        "requested": {"start_ms": clip.start_ms, "end_ms": clip.end_ms},
        "created_ms": clip.created_ms,
        "updated_ms": clip.updated_ms,
        "error": clip.error,
        "passthrough": meta.get("passthrough"),
        "callback_url": meta.get("callback_url"),
        "callback_id": meta.get("callback_id"),
        "links": {"self": absolute(base_url, f"/v1/clips/{clip.id}")},
    }
    if clip.result is not None:
        body.update(_absolute_urls(clip.result, base_url))
    if clip.state == "ready" and isinstance(clip.result, dict):
        body["links"] = {
            "self": absolute(base_url, f"/v1/clips/{clip.id}"),
            **{k: absolute(base_url, v) for k, v in file_links(clip.result).items()},
        }
    body["options"] = {k: v for k, v in options.items() if k != "meta"}
    return body


def _sessions(clip: ClipRow) -> list[str]:
    return [clip.session_id] if clip.session_id else []


def _absolute_urls(value: dict[str, object], base_url: str) -> dict[str, object]:
    """The stored result with every file "url" made absolute."""

    def walk(item: object) -> object:
        if isinstance(item, dict):
            return {
                k: absolute(base_url, v) if k == "url" and isinstance(v, str) else walk(v)
                for k, v in item.items()
            }
        if isinstance(item, list):
            return [walk(v) for v in item]
        return item

    result = walk(value)
    assert isinstance(result, dict)
    return result


def file_links(result: dict[str, object]) -> dict[str, str]:
    """By format for a one-window clip (mp4, hls, vtt), and by file name for every window."""
    links: dict[str, str] = {}
    files = result.get("files")
    if isinstance(files, dict):
        links.update({kind: f["url"] for kind, f in files.items() if isinstance(f, dict)})
    windows = result.get("windows")
    for window in windows if isinstance(windows, list) else []:
        for f in window.get("files", {}).values() if isinstance(window, dict) else []:
            if isinstance(f, dict):
                links[f["name"]] = f["url"]
        # A window cut at a change of codec parameters: one MP4 per piece.
        pieces = window.get("pieces") if isinstance(window, dict) else None
        for piece in pieces if isinstance(pieces, list) else []:
            f = piece.get("file") if isinstance(piece, dict) else None
            if isinstance(f, dict):
                links[f["name"]] = f["url"]
    return links


def session_json(session: SessionRow) -> dict[str, object]:
    return {
        "id": session.id,
        "stream": session.stream_id,
        "state": session.state,
        "clock": session.clock,
        "start_ms": session.started_ms,
        "end_ms": session.ended_ms if session.ended_ms is not None else session.live_edge_ms,
        "live_edge_ms": session.live_edge_ms,
        "end_reason": session.end_reason,
    }
