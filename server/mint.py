"""POST /v1/realtime/client_secrets: a short-lived client token for a browser, bound to what its minter allows.

With server.api_keys set, only an API-key holder (a site's backend) gets a token, and it may bind the token to
its logged-in user and a character, as with OpenAI's ephemeral keys:

    POST /v1/realtime/client_secrets   Authorization: Bearer <API key>
    {"expires_after": {"seconds": 600}, "session": {"livehost": {"user_id": "u_42", "character": "mika"}}}

A session opened with that token is user u_42 talking to mika and cannot become anyone else. Without api_keys,
web pages get tokens too (server.page_tokens, default on), but theirs are anonymous: binding a user needs a key
(or, on a keyless server, a local program).
"""
from __future__ import annotations

from typing import Any

from fastapi import HTTPException, Request

from livehost.server.auth import parse_ttl, user_id_problem

_SHAPE = 'body must be JSON like {"expires_after": {"seconds": 600}, "session": {"livehost": {"user_id": "u1"}}}'


async def mint_client_secret(app: Any, request: Request) -> dict:
    gate = app.state.gate
    minter = gate.identify(request.headers)  # 401 for a missing or wrong credential when keys are set
    if not gate.open and minter.kind != "key":
        raise HTTPException(401, "client tokens are minted only for an API key (Authorization: Bearer <key>): "
                                 "your backend mints one for its user and hands it to the page",
                            headers={"WWW-Authenticate": "Bearer"})
    if gate.open and not gate.page_tokens and minter.kind != "local":
        raise HTTPException(401, "this server gives web pages no client tokens (server.page_tokens: false)",
                            headers={"WWW-Authenticate": "Bearer"})
    if not app.state.limits.mints.allow(request.client.host if request.client else ""):
        raise HTTPException(429, "too many client tokens from this address; try again in a minute")
    try:
        body = await request.json() if await request.body() else {}
        if not isinstance(body, dict):
            raise ValueError(_SHAPE)
        ttl = parse_ttl(body, gate.token_ttl_s)
    except ValueError as exc:  # also bad JSON (JSONDecodeError is a ValueError)
        raise HTTPException(400, str(exc) if "expires_after" in str(exc) else _SHAPE) from None
    session = body.get("session") or {}
    ext = session.get("livehost") if isinstance(session, dict) else None
    if ext is not None and not isinstance(ext, dict):
        raise HTTPException(400, _SHAPE)
    user_id, character = (ext or {}).get("user_id"), (ext or {}).get("character")
    if user_id is not None:
        if problem := user_id_problem(user_id):
            raise HTTPException(400, f"session.livehost.user_id: {problem}")
        if not minter.chooses_user:
            raise HTTPException(403, "only an API-key holder may bind a client token to a user")
    if character is not None:
        if not isinstance(character, str):
            raise HTTPException(400, "session.livehost.character must be a string")
        try:
            app.state.engines.characters.get(character)
        except KeyError:
            raise HTTPException(400, f"session.livehost.character: no character {character!r}") from None
    value, expires = gate.mint(ttl, user_id=user_id, character=character or minter.character)
    return {"value": value, "expires_at": expires,
            "session": {"type": "realtime", "livehost": {"user_id": user_id, "character": character}}}
