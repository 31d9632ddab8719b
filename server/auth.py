"""API keys for the Realtime endpoints. No keys configured means local use without auth."""
from __future__ import annotations

import hmac

from fastapi import WebSocket


def key_ok(presented: str | None, keys: list[str]) -> bool:
    if not keys:
        return True
    return bool(presented) and any(hmac.compare_digest(presented, k) for k in keys)


def websocket_key_ok(ws: WebSocket, keys: list[str]) -> bool:
    """Bearer header (SDKs), or the subprotocol 'openai-insecure-api-key.KEY' that browsers must use."""
    header = ws.headers.get("authorization", "")
    presented = header[7:].strip() if header.lower().startswith("bearer ") else None
    for proto in ws.headers.get("sec-websocket-protocol", "").split(","):
        if proto.strip().startswith("openai-insecure-api-key."):
            presented = proto.strip().split(".", 1)[1]
    return key_ok(presented, keys)
