"""Who may talk to the server, and as whom. Long-lived API keys stay on servers; browsers get short-lived, scoped
client tokens (like OpenAI's ephemeral client secrets) from POST /v1/realtime/client_secrets.

Every connection gets an `Identity` from its credential, never from what the client says later:
  key        an API key: may pick any user (session.livehost.user_id) and character.
  token      a client token minted with an API key (or by a local program on a keyless server) that binds a user
             id: the session is that user, and cannot become another.
  anonymous  a token that binds no user, or a browser on a keyless server: an id of its own (anon_...), no
             long-term memory, and no user id of its choosing.
  local      a keyless server (the default, on 127.0.0.1) and a client that is not a web page (no Origin
             header): the operator's own programs, trusted like a key.
A token may also bind a character; a session can never widen what its credential allows.

Client tokens are stateless: HMAC-signed claims (user, character, scope, expiry), checked without a database round
trip. Nodes that share server.token_secret (or LIVEHOST_SERVER__TOKEN_SECRET) accept each other's tokens and all
enforce the same expiry (their clocks must agree, NTP). Without it each process signs with a secret of its own:
tokens are node-local and a restart ends them. Revocation: a token is checked when a session opens, not after; it
cannot be revoked one by one (keep token_ttl_s short), and changing the shared secret ends every outstanding token
on every node at once. A WebRTC call is hung up by the credential that made it, on the node that holds the call.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import math
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from fastapi import HTTPException

log = logging.getLogger("livehost.auth")
TOKEN_PREFIX = "ek_"
USER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@:+\-]{0,127}$")  # no '/', no '..' alone, no spaces or controls


def user_id_problem(value: Any) -> Optional[str]:
    """None for a valid user id; otherwise what is wrong, in words for the client."""
    if not isinstance(value, str) or not USER_ID.match(value) or value.startswith("anon_"):
        return ("a user id is 1..128 characters of letters, digits and _ . @ : + -, starting with a letter or digit "
                "(anon_ ids are the server's)")
    return None


@dataclass(frozen=True)
class Identity:
    kind: str  # key | token | anonymous | local
    user_id: Optional[str] = None  # the bound user, or the anonymous id
    character: Optional[str] = None  # a bound character
    fingerprint: str = ""  # a hash of the credential: a call is hung up only with the credential that made it

    @property
    def chooses_user(self) -> bool:
        return self.kind in ("key", "local")

    @property
    def anonymous(self) -> bool:
        return self.kind == "anonymous"


def anonymous(character: Optional[str] = None, fingerprint: str = "") -> Identity:
    return Identity("anonymous", "anon_" + secrets.token_hex(8), character, fingerprint)


class Gate:
    def __init__(self, keys: list[str], token_ttl_s: float = 600, page_tokens: bool = True,
                 secret: Optional[str] = None):
        self.keys, self.token_ttl_s, self.page_tokens = list(keys), token_ttl_s, page_tokens
        # tokens are signed, not stored; a per-process secret means a restart ends them all
        self.shared = bool(secret)
        self._secret = (secret or secrets.token_hex(32)).encode()
        if not self.shared:
            log.info("client tokens are node-local (no server.token_secret): another node, or this one after a "
                     "restart, refuses them; set the same token_secret on every node of a cluster")

    @property
    def open(self) -> bool:
        return not self.keys

    def is_key(self, presented: Optional[str]) -> bool:
        if not presented:
            return False
        given = presented.encode("utf-8", "replace")  # bytes: compare_digest refuses non-ASCII str
        return any(hmac.compare_digest(given, k.encode()) for k in self.keys)

    def mint(self, ttl_s: Optional[float] = None, scope: str = "realtime", user_id: Optional[str] = None,
             character: Optional[str] = None) -> tuple[str, int]:
        ttl = self.token_ttl_s if ttl_s is None else ttl_s
        expires = int(time.time() + min(ttl, self.token_ttl_s))
        claims: dict[str, Any] = {"exp": expires, "scope": scope, "jti": secrets.token_hex(6)}  # each one unique
        if user_id:
            claims["sub"] = user_id
        if character:
            claims["chr"] = character
        body = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
        return f"{TOKEN_PREFIX}{body}.{self._sign(body)}", expires

    def _sign(self, body: str) -> str:
        return hmac.new(self._secret, body.encode(), hashlib.sha256).hexdigest()[:32]

    def claims(self, presented: str, scope: str = "realtime") -> tuple[Optional[dict], str]:
        """(claims, "") for a valid client token of `scope`; (None, reason) otherwise."""
        if not presented.startswith(TOKEN_PREFIX):
            return None, "invalid API key"
        body, _, signature = presented[len(TOKEN_PREFIX):].partition(".")
        if not hmac.compare_digest(signature.encode("utf-8", "replace"), self._sign(body).encode()):
            return None, "invalid client token"
        try:
            claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
            expires = float(claims.get("exp", 0))
        except (ValueError, binascii.Error, AttributeError, TypeError):
            return None, "invalid client token"
        if not math.isfinite(expires) or expires < time.time():
            return None, "client token expired; get a new one from /v1/realtime/client_secrets"
        if claims.get("scope") != scope:
            return None, f"client token is not valid for {scope}"
        return claims, ""

    def why_not(self, presented: Optional[str], scope: str = "realtime", key_only: bool = False) -> Optional[str]:
        """None when `presented` may use `scope`; otherwise the reason, in words for the client."""
        if self.open or self.is_key(presented):
            return None
        if not presented:
            return "missing API key or client token (Authorization: Bearer ...)"
        if key_only:
            return "invalid API key"
        return self.claims(presented, scope)[1] or None

    def identify(self, headers: Mapping[str, str], scope: str = "realtime") -> Identity:
        """The identity of a connection (raises a 401 HTTPException with the reason when it may not connect)."""
        presented = presented_credential(headers)
        fingerprint = hashlib.sha256(presented.encode("utf-8", "replace")).hexdigest() if presented else ""
        if self.is_key(presented):
            return Identity("key", fingerprint=fingerprint)
        if presented:
            claims, reason = self.claims(presented, scope)
            if claims is not None:
                character = claims.get("chr") if isinstance(claims.get("chr"), str) else None
                user = claims.get("sub")
                if isinstance(user, str) and user:
                    return Identity("token", user, character, fingerprint)
                return anonymous(character, fingerprint)
            if not self.open:
                raise _unauthorized(reason)
        if not self.open:
            raise _unauthorized("missing API key or client token (Authorization: Bearer ...)")
        if headers.get("origin"):  # a web page on a keyless server: a visitor, not the operator
            return anonymous(fingerprint=fingerprint)
        return Identity("local", fingerprint=fingerprint)

    def require(self, headers: Mapping[str, str], scope: str = "realtime", key_only: bool = False) -> None:
        reason = self.why_not(presented_credential(headers), scope, key_only)
        if reason:
            raise _unauthorized(reason)

    def require_operator(self, headers: Mapping[str, str]) -> None:
        """Users' memories and other operator endpoints: an API key; on a keyless server, a local program (never a
        web page, whose Origin header gives it away)."""
        self.require(headers, key_only=True)
        if self.open and headers.get("origin"):
            raise HTTPException(403, "web pages may not use this endpoint on a server without API keys")


def _unauthorized(reason: str) -> HTTPException:
    return HTTPException(401, reason, headers={"WWW-Authenticate": "Bearer"})


def presented_credential(headers: Mapping[str, str]) -> Optional[str]:
    """Bearer header (SDKs, fetch), or the subprotocol 'openai-insecure-api-key.KEY' that browser WebSockets use."""
    header = headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip() or None
    for proto in headers.get("sec-websocket-protocol", "").split(","):
        if proto.strip().startswith("openai-insecure-api-key."):
            return proto.strip().split(".", 1)[1] or None
    return None


def chosen_subprotocol(headers: Mapping[str, str]) -> Optional[str]:
    """The WebSocket subprotocol to answer with: "realtime" when the client offered it (a browser drops a connection
    whose offered subprotocols all go unanswered; the credential subprotocol is never echoed)."""
    offered = [p.strip() for p in headers.get("sec-websocket-protocol", "").split(",")]
    return "realtime" if "realtime" in offered else None


def parse_ttl(body: Any, default: float) -> float:
    """expires_after.seconds of a client_secrets body: a finite number > 0 (longer ones are cut to the maximum)."""
    value = ((body or {}).get("expires_after") or {}).get("seconds") if isinstance(body, dict) else None
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError("expires_after.seconds must be a number of seconds above 0")
    return float(value)
