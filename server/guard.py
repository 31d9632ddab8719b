"""Where requests may come from: the Host header (DNS rebinding) and the Origin of web pages, plus CORS.

- Host: a server bound to loopback answers only Host names that are loopback or named in server.allowed_origins,
  so a hostile site whose name is made to resolve to 127.0.0.1 (DNS rebinding) gets nothing.
- Origin: a web page may use the API (WebSocket, WebRTC offers, every /v1 route) only from the server's own origin,
  a loopback origin, or one in server.allowed_origins ('*': any). Programs send no Origin and are not affected.
  The page files themselves are public, so a site can embed the widget.
- CORS: cross-origin pages from the allowed origins get the headers they need; no one else does.
"""
from __future__ import annotations

import ipaddress
import json
import logging
from typing import Iterable, Optional
from urllib.parse import urlsplit

log = logging.getLogger("livehost.guard")
_CORS = [(b"access-control-allow-methods", b"GET, POST, DELETE, OPTIONS"),
         (b"access-control-allow-headers", b"authorization, content-type"),
         (b"access-control-expose-headers", b"location"), (b"access-control-max-age", b"600")]


def is_loopback(host: Optional[str]) -> bool:
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _hostname(netloc: str) -> str:
    try:
        return (urlsplit("//" + netloc).hostname or "").lower()
    except ValueError:
        return ""


class OriginGuard:
    """Pure ASGI middleware: refuses before any route runs (and before a WebSocket is accepted)."""

    def __init__(self, app, bind_host: str, allowed_origins: Iterable[str]):
        self.app = app
        allowed = [o.strip().rstrip("/").lower() for o in allowed_origins if o.strip()]
        self.any_origin = "*" in allowed
        self.origins = {o for o in allowed if o != "*"}
        self.hosts = {urlsplit(o).hostname for o in self.origins} - {None}
        self.check_host = is_loopback(bind_host) and not self.any_origin

    def origin_allowed(self, origin: str, host: str) -> bool:
        origin = origin.rstrip("/").lower()
        if self.any_origin or origin in self.origins:
            return True
        try:
            parts = urlsplit(origin)
        except ValueError:
            return False
        if parts.scheme not in ("http", "https"):
            return False  # "null" (sandboxed frames, file:), extensions, ...
        return parts.netloc == host.lower() or is_loopback(parts.hostname)

    def host_allowed(self, host: str) -> bool:
        name = _hostname(host)
        return not self.check_host or is_loopback(name) or name in self.hosts

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host, origin = headers.get("host", ""), headers.get("origin")
        if not self.host_allowed(host):
            log.warning("refused a request for Host %r (server.allowed_origins names the hosts a loopback server "
                        "answers)", host)
            return await _refuse(scope, receive, send, 421, f"this server does not answer for Host {host!r}")
        method, path = scope.get("method", "GET"), scope.get("path", "")
        guarded = scope["type"] == "websocket" or path.startswith("/v1/") or method not in ("GET", "HEAD") \
            or path in ("/metrics", "/healthz")
        if origin is None or not guarded:
            return await self.app(scope, receive, send)
        if not self.origin_allowed(origin, host):
            return await _refuse(scope, receive, send, 403, f"web pages from {origin} may not use this server "
                                                  f"(server.allowed_origins)")
        if scope["type"] == "websocket" or urlsplit(origin).netloc.lower() == host.lower():
            return await self.app(scope, receive, send)  # same origin: CORS does not apply
        cors = [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin")]
        if method == "OPTIONS" and "access-control-request-method" in headers:  # a preflight
            await send({"type": "http.response.start", "status": 204, "headers": cors + _CORS})
            return await send({"type": "http.response.body", "body": b""})

        async def with_cors(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": list(message.get("headers", [])) + cors + _CORS[2:3]}
            await send(message)
        return await self.app(scope, receive, with_cors)


async def _refuse(scope, receive, send, status: int, message: str) -> None:
    if scope["type"] == "websocket":  # closing before accept: the server answers the handshake with 403
        await receive()  # websocket.connect
        return await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})
    body = json.dumps({"error": {"type": "invalid_request_error", "code": "origin_not_allowed" if status == 403
                                 else "host_not_allowed", "message": message}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
