"""Who may talk to the server. Long-lived API keys stay on servers; browsers get short-lived, scoped client
tokens (like OpenAI's ephemeral client secrets) from POST /v1/realtime/client_secrets. With no API keys configured
(the default, on 127.0.0.1) everything is open for local use.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import Mapping, Optional

from fastapi import HTTPException

TOKEN_PREFIX = "ek_"


class Gate:
    def __init__(self, keys: list[str], token_ttl_s: float = 600, page_tokens: bool = True,
                 secret: Optional[str] = None):
        self.keys, self.token_ttl_s, self.page_tokens = list(keys), token_ttl_s, page_tokens
        # tokens are signed, not stored; a per-process secret means a restart ends them all
        self._secret = (secret or secrets.token_hex(32)).encode()

    @property
    def open(self) -> bool:
        return not self.keys

    def is_key(self, presented: Optional[str]) -> bool:
        return bool(presented) and any(hmac.compare_digest(presented, k) for k in self.keys)

    def mint(self, ttl_s: Optional[float] = None, scope: str = "realtime") -> tuple[str, int]:
        expires = int(time.time() + min(ttl_s or self.token_ttl_s, self.token_ttl_s))
        body = base64.urlsafe_b64encode(json.dumps({"exp": expires, "scope": scope}).encode()).decode().rstrip("=")
        return f"{TOKEN_PREFIX}{body}.{self._sign(body)}", expires

    def _sign(self, body: str) -> str:
        return hmac.new(self._secret, body.encode(), hashlib.sha256).hexdigest()[:32]

    def why_not(self, presented: Optional[str], scope: str = "realtime", key_only: bool = False) -> Optional[str]:
        """None when `presented` may use `scope`; otherwise the reason, in words for the client."""
        if self.open or self.is_key(presented):
            return None
        if not presented:
            return "missing API key or client token (Authorization: Bearer ...)"
        if key_only or not presented.startswith(TOKEN_PREFIX):
            return "invalid API key"
        body, _, signature = presented[len(TOKEN_PREFIX):].partition(".")
        if not hmac.compare_digest(signature, self._sign(body)):
            return "invalid client token"
        claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        if claims.get("exp", 0) < time.time():
            return "client token expired; get a new one from /v1/realtime/client_secrets"
        if claims.get("scope") != scope:
            return f"client token is not valid for {scope}"
        return None

    def require(self, headers: Mapping[str, str], scope: str = "realtime", key_only: bool = False) -> None:
        reason = self.why_not(presented_credential(headers), scope, key_only)
        if reason:
            raise HTTPException(401, reason, headers={"WWW-Authenticate": "Bearer"})


def presented_credential(headers: Mapping[str, str]) -> Optional[str]:
    """Bearer header (SDKs, fetch), or the subprotocol 'openai-insecure-api-key.KEY' that browser WebSockets use."""
    header = headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    for proto in headers.get("sec-websocket-protocol", "").split(","):
        if proto.strip().startswith("openai-insecure-api-key."):
            return proto.strip().split(".", 1)[1]
    return None
