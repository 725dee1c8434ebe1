"""Where a callback_url may point: http(s), and no private addresses unless allowed (SSRF)."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

CALLBACK_URL_MAX = 2000


class RefusedTarget(ValueError):
    """The URL may not receive webhooks."""


def is_private(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def check_callback_url(url: object, *, allow_private: bool) -> str:
    """The URL, or RefusedTarget saying why not (checked again, resolved, at delivery)."""
    if not isinstance(url, str) or not url or len(url) > CALLBACK_URL_MAX:
        raise RefusedTarget(f"callback_url must be an http(s) URL of at most {CALLBACK_URL_MAX}")
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        raise RefusedTarget("callback_url contains spaces or control characters")
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise RefusedTarget("callback_url must be an absolute http:// or https:// URL")
    try:
        parts.port  # noqa: B018 - urlsplit checks the port only when asked
    except ValueError:
        raise RefusedTarget("callback_url has an invalid port") from None
    if parts.username or parts.password:
        raise RefusedTarget("callback_url may not carry credentials")
    host = parts.hostname
    if not allow_private:
        if host.lower().rstrip(".") in (
            "localhost",
            "localhost.localdomain",
        ) or host.lower().endswith(".localhost"):
            raise RefusedTarget(
                "callback_url names a loopback host; allow it with webhooks.allow_private"
            )
        try:
            private = is_private(host)
        except ValueError:
            private = False  # a name: checked when it is resolved, at delivery
        if private:
            raise RefusedTarget(
                "callback_url names a private, loopback or link-local address; "
                "allow it with webhooks.allow_private"
            )
    return url


class PublicOnlyResolver(AbstractResolver):
    """Resolves like the default resolver, then refuses private addresses (DNS rebinding)."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            if is_private(str(result["host"])):
                raise OSError(f"{host} resolves to a private address; not delivering there")
        return results

    async def close(self) -> None:
        await self._inner.close()
