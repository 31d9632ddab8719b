"""The FastAPI app: the Realtime endpoint, health and metrics."""
from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Optional

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from livehost import web_client
from livehost.persona.store import StorageUnavailable, storage_health
from livehost.persona.voices import prepare_voices, voice_status
from livehost.server import metrics
from livehost.server.auth import Gate
from livehost.server.config import Settings
from livehost.server.engines import Engines
from livehost.server.guard import OriginGuard, is_loopback
from livehost.server.limits import ServerLimits
from livehost.server.realtime_ws import realtime_websocket
from livehost.server.webrtc import create_call, hangup_call

WEB_CLIENT = Path(web_client.__file__).parent  # the source tree (editable install) or site-packages
PAGE_FILES = {".html", ".js", ".css", ".png", ".jpg", ".svg", ".webp", ".json", ".ico", ".woff2"}
MAX_MEMORY_ID = (1 << 63) - 1  # SQLite's largest rowid
log = logging.getLogger("livehost.app")


class PageFiles(StaticFiles):
    """The web client's page files only: never its README, Python files or anything hidden."""

    def lookup_path(self, path: str):
        parts = Path(path).parts
        if any(p.startswith((".", "_")) for p in parts) or (parts and Path(path).suffix.lower() not in PAGE_FILES):
            return "", None
        return super().lookup_path(path)


def create_app(settings: Settings, engines: Optional[Engines] = None, stream: bool = False) -> FastAPI:
    """Build the app; engines are loaded here unless the caller (tests, the CLI) already has them.
    stream: also run the livestream host (`livehost stream`) and its /v1/stream routes."""
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.loop = asyncio.get_running_loop()
        if stream:
            from livehost.server.livestream.cluster import make_stream  # under a lease with a Postgres storage.url
            app.state.stream = make_stream(app.state.engines, settings)
            await app.state.stream.start()
        yield
        if app.state.stream is not None:
            await app.state.stream.close()
        for call in [c for c in app.state.calls.values() if c is not None]:  # hang up every WebRTC call on shutdown
            await call.close("server shutting down")
        if owns_engines:
            app.state.engines.close()

    app = FastAPI(title="livehost", version="0.1.0", lifespan=lifespan,
                  description="Real-time conversational virtual hosts over the OpenAI Realtime protocol.")
    app.state.settings = settings
    owns_engines = engines is None
    app.state.engines = engines or Engines.load(settings)
    if app.state.engines.characters is not None:  # a card whose voice is not installed says so at start
        prepare_voices(app.state.engines.characters.list(), settings.tts, load=owns_engines)
    app.state.started = time.time()
    s = settings.server
    app.state.gate = Gate(s.api_keys, s.token_ttl_s, s.page_tokens, s.token_secret)
    app.state.limits = ServerLimits(s)
    app.add_middleware(OriginGuard, bind_host=s.host, allowed_origins=s.allowed_origins)
    if not is_loopback(s.host) and not s.api_keys:
        log.warning("listening on %s with no server.api_keys: anyone who can reach this address can use the API "
                    "(and run up the server's work); set api_keys for anything beyond this machine", s.host)

    @app.exception_handler(StorageUnavailable)
    async def storage_down(request: Request, exc: StorageUnavailable) -> JSONResponse:
        return JSONResponse({"detail": f"{exc}; try again shortly"}, status_code=503)  # e.g. an erasure

    def public(request: Request, tokens: bool = False) -> None:
        """/healthz, /metrics, /v1/characters: public only by choice (server.public_metrics) once keys are set."""
        if not s.public_metrics:
            app.state.gate.require(request.headers, key_only=not tokens)

    @app.get("/healthz")
    def healthz(request: Request) -> dict:
        public(request)
        s = settings
        return {"status": "ok", "uptime_s": round(time.time() - app.state.started, 1),
                "sessions": sum(int(m.value) for m in _gauge_samples()),
                "engines": {"asr": f"{s.asr.engine}:{getattr(app.state.engines.asr, 'name', s.asr.model)}", "llm": f"{s.llm.engine}:{s.llm.model or 'bundled'}",
                            "tts": f"{s.tts.engine}:{s.tts.voice or 'bundled'}", "vad": s.vad.engine},
                # replies go on while shared storage is down (memory writes queue): reported here, status stays ok
                "storage": storage_health(app.state.engines.memory)}

    @app.get("/metrics")
    def prometheus(request: Request) -> Response:
        public(request)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/characters", summary="The characters a session can pick (session.livehost.character)")
    def characters(request: Request) -> dict:
        public(request, tokens=True)
        return {"object": "list", "data": [
            {"id": c.id, "name": c.name, "greeting": c.greeting, "languages": c.languages, "mode": c.mode,
             "avatar": c.avatar.asset, "emotions": c.emotions, "voice": voice_status(c, settings.tts)}
            for c in app.state.engines.characters.list()]}

    @app.post("/v1/realtime/client_secrets", summary="A short-lived client token for a browser (scope: realtime)")
    async def client_secret(request: Request) -> dict:
        from livehost.server.mint import mint_client_secret
        return await mint_client_secret(app, request)

    def memory_store(request: Request):
        app.state.gate.require_operator(request.headers)  # users' memories: API keys only, never tokens or pages
        if app.state.engines.memory is None:
            raise HTTPException(404, "long-term memory is off (memory.enabled: false)")
        return app.state.engines.memory

    @app.get("/v1/users", summary="The users livehost keeps memories of, with how many each")
    async def list_users(request: Request) -> dict:
        found = await asyncio.to_thread(memory_store(request).users)
        return {"object": "list", "data": [{"id": user, "memories": n} for user, n in found]}

    # {user_id:path}: ids stored before ids were checked (with '/' in them) can still be listed and erased
    @app.get("/v1/users/{user_id:path}/memories", summary="What livehost remembers about a user")
    async def list_memories(user_id: str, request: Request) -> dict:
        found = await asyncio.to_thread(memory_store(request).list, user_id)
        return {"object": "list", "data": [{"id": m.id, "text": m.text, "kind": m.kind, "importance": m.importance,
                                            "created_at": m.created_at} for m in found]}

    @app.delete("/v1/users/{user_id:path}/memories", summary="Forget everything about a user (deleted from disk)")
    async def erase_memories(user_id: str, request: Request) -> dict:
        return {"deleted": await asyncio.to_thread(memory_store(request).erase, user_id)}

    @app.delete("/v1/users/{user_id:path}/memories/{memory_id}", summary="Forget one memory (deleted from disk)")
    async def erase_memory(user_id: str, memory_id: int, request: Request) -> dict:
        store = memory_store(request)
        if not 0 < memory_id <= MAX_MEMORY_ID:
            raise HTTPException(404, f"user {user_id!r} has no memory {memory_id}")
        deleted = await asyncio.to_thread(store.erase, user_id, memory_id)
        if not deleted:
            raise HTTPException(404, f"user {user_id!r} has no memory {memory_id}")
        return {"deleted": deleted}

    app.state.calls = {}
    app.state.stream = None
    if stream:
        from livehost.server.livestream.routes import router
        app.include_router(router)
    app.add_api_websocket_route("/v1/realtime", realtime_websocket)
    app.add_api_route("/v1/realtime/calls", create_call, methods=["POST"], status_code=201,
                      summary="WebRTC: POST an SDP offer, get the SDP answer")
    app.add_api_route("/v1/realtime/calls/{call_id}/hangup", hangup_call, methods=["POST"], summary="End a WebRTC call")
    if (WEB_CLIENT / "index.html").exists():
        app.mount("/", PageFiles(directory=WEB_CLIENT, html=True), name="web_client")
    return app


def _gauge_samples():
    for family in metrics.SESSIONS_ACTIVE.collect():
        yield from family.samples
