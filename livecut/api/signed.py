"""Signed, expiring URLs: `?exp=<unix s>&sig=<hex HMAC-SHA256>` over a path scope.

A page can hand a player or an `<a download>` a URL without putting an API key in it:
a key holder asks for a signature (POST /v1/streams/{id}/playback, POST
/v1/events/token), and the query it gets opens what lies under the signed scope until
`exp`. The scope is a path prefix: `/v1/streams/{id}/` covers that stream's playlists
and media (and the files of clips cut from it), `/v1/events` the event stream.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

SECRET_FILE = "playback.secret"  # in the data directory, made on first start
EXPIRES_S = (60, 86_400)  # the expiries a signature may be asked for
DEFAULT_EXPIRES_S = 3600
EXP = "exp"
SIG = "sig"
SIGNED_QUERY = (EXP, SIG)  # the query parameters a signed URL adds
_HEX = frozenset("0123456789abcdef")


def stream_scope(stream_id: str) -> str:
    return f"/v1/streams/{stream_id}/"


EVENTS_SCOPE = "/v1/events"


@dataclass(frozen=True, kw_only=True, slots=True)
class SignedQuery:
    """A signature as it goes into a URL's query."""

    exp: int  # Unix seconds after which it no longer opens anything
    sig: str

    def query(self) -> str:
        return f"{EXP}={self.exp}&{SIG}={self.sig}"


class Signer:
    """Signs and checks scopes with the server's secret (constant-time comparison)."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def sign(self, scope: str, exp: int) -> SignedQuery:
        mac = hmac.new(self._secret, f"{scope}\n{exp}".encode(), hashlib.sha256)
        return SignedQuery(exp=exp, sig=mac.hexdigest())

    def verify(self, scope: str, query: Mapping[str, str], *, now_s: float) -> bool:
        """True when the query carries a signature of `scope` that has not expired."""
        raw_exp, sig = query.get(EXP), query.get(SIG)
        if raw_exp is None or sig is None or len(sig) != 64 or not set(sig) <= _HEX:
            return False
        if not (raw_exp.isascii() and raw_exp.isdigit()) or len(raw_exp) > 12:
            return False
        exp = int(raw_exp)
        if exp < now_s:
            return False
        return hmac.compare_digest(self.sign(scope, exp).sig, sig)


def load_secret(configured: str | None, data_dir: Path) -> bytes:
    """`server.playback_secret` if set; else the data directory's own, made on first start
    (so signed URLs survive a restart, and each installation has a different one)."""
    if configured is not None:
        return configured.encode()
    path = data_dir / SECRET_FILE
    try:
        stored = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        stored = ""
    if len(stored) >= 32:
        return stored.encode()
    # Written whole or not at all: a crash never leaves a short secret behind.
    secret = secrets.token_hex(32)
    temporary = path.with_name(f".{SECRET_FILE}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(secret + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    return secret.encode()
