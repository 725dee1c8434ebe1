"""`livecut-signature: t=<unix s>,v1=<hex HMAC-SHA256 of "t.body">`, as Mux and Livepeer sign."""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "livecut-signature"
TOLERANCE_S = 300


def signature(secret: str, body: bytes, t: int) -> str:
    mac = hmac.new(secret.encode(), str(t).encode() + b"." + body, hashlib.sha256)
    return f"t={t},v1={mac.hexdigest()}"


def verify(
    secret: str,
    body: bytes,
    header: str,
    *,
    now_s: float | None = None,
    tolerance_s: float = TOLERANCE_S,
) -> bool:
    """True when `header` signs `body` with `secret` and its time is within tolerance."""
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        fields.setdefault(key, []).append(value)
    try:
        t = int(fields["t"][0])
    except (KeyError, ValueError):
        return False
    now = time.time() if now_s is None else now_s
    if abs(now - t) > tolerance_s:
        return False
    expected = signature(secret, body, t).rpartition("v1=")[2]
    return any(hmac.compare_digest(expected, v) for v in fields.get("v1", []))
