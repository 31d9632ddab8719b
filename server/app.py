"""The FastAPI app: the Realtime endpoint, health and metrics."""
from __future__ import annotations

import asyncio
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Optional

from fastapi import FastAPI, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from livehost.server import metrics
from livehost.server.config import Settings
from livehost.server.engines import Engines
from livehost.server.realtime_ws import realtime_websocket
from livehost.server.webrtc import create_call, hangup_call

WEB_CLIENT = Path(__file__).resolve().parent.parent / "web_client"


def create_app(settings: Settings, engines: Optional[Engines] = None) -> FastAPI:
    """Build the app; engines are loaded here unless the caller (tests, the CLI) already has them."""
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.loop = asyncio.get_running_loop()
        yield
        for call in list(app.state.calls.values()):  # hang up every WebRTC call on shutdown
            await call.close("server shutting down")

    app = FastAPI(title="livehost", version="0.1.0", lifespan=lifespan,
                  description="Real-time conversational virtual hosts over the OpenAI Realtime protocol.")
    app.state.settings = settings
    app.state.engines = engines or Engines.load(settings)
    app.state.started = time.time()

    @app.get("/healthz")
    def healthz() -> dict:
        s = settings
        return {"status": "ok", "uptime_s": round(time.time() - app.state.started, 1),
                "sessions": sum(int(m.value) for m in _gauge_samples()),
                "engines": {"asr": f"{s.asr.engine}:{s.asr.model}", "llm": f"{s.llm.engine}:{s.llm.model or 'bundled'}",
                            "tts": f"{s.tts.engine}:{s.tts.voice or 'bundled'}", "vad": s.vad.engine}}

    @app.get("/metrics")
    def prometheus() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/characters", summary="The characters a session can pick (session.livehost.character)")
    def characters() -> dict:
        return {"object": "list", "data": [
            {"id": c.id, "name": c.name, "greeting": c.greeting, "languages": c.languages, "mode": c.mode,
             "avatar": c.avatar.asset, "emotions": c.emotions} for c in app.state.engines.characters.list()]}

    app.state.calls = {}
    app.add_api_websocket_route("/v1/realtime", realtime_websocket)
    app.add_api_route("/v1/realtime/calls", create_call, methods=["POST"], status_code=201,
                      summary="WebRTC: POST an SDP offer, get the SDP answer")
    app.add_api_route("/v1/realtime/calls/{call_id}/hangup", hangup_call, methods=["POST"], summary="End a WebRTC call")
    if (WEB_CLIENT / "index.html").exists():
        app.mount("/", StaticFiles(directory=WEB_CLIENT, html=True), name="web_client")
    return app


def _gauge_samples():
    for family in metrics.SESSIONS_ACTIVE.collect():
        yield from family.samples
