"""Helpers for the hardening tests (tests only): a real server (uvicorn, the real app and sessions) on engine
doubles, so identity, origin, limit and bad-input checks run in the fast lane without loading a model."""
from __future__ import annotations

import asyncio
import hashlib
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional

import numpy as np
import websockets

from conftest import RunningServer, _free_port
from engine_doubles import engines as double_engines


class HashEmbedder:
    """Bag-of-words vectors from hashes: the same words give the same vector, enough for a store's plumbing."""
    name, dim, multilingual = "hash", 64, True

    def embed(self, texts, kind="passage"):
        out = np.zeros((len(texts), self.dim), np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                out[row, int(hashlib.sha1(word.encode()).hexdigest(), 16) % self.dim] += 1
            out[row] /= max(1e-6, float(np.linalg.norm(out[row])))
        return out


def memory_store(path: Path):
    from livehost.persona.memory import MemoryStore
    return MemoryStore(path, HashEmbedder())


def with_server(settings, **server: Any):
    return settings.model_copy(update={"server": settings.server.model_copy(update=server)})


@contextmanager
def served(settings, llm: Any = None, memory: Any = None, stream: bool = False, **server: Any):
    """A running server with the given server.* settings on engine doubles."""
    from livehost.server.app import create_app
    app = create_app(with_server(settings, **server), double_engines(llm=llm, memory=memory), stream=stream)
    with RunningServer(app, _free_port()) as srv:
        yield srv


class Client:
    """A bare Realtime WebSocket client that can send what no SDK would."""

    def __init__(self, ws):
        self.ws = ws
        self.created: dict = {}

    async def send(self, event) -> None:
        await self.ws.send(event if isinstance(event, (str, bytes)) else json.dumps(event))

    async def until(self, kind: str, timeout: float = 10) -> list[dict]:
        events: list[dict] = []

        async def run():
            while True:
                events.append(json.loads(await self.ws.recv()))
                if events[-1]["type"] == kind:
                    return
        await asyncio.wait_for(run(), timeout)
        return events

    async def error(self, timeout: float = 10) -> dict:
        return (await self.until("error", timeout))[-1]["error"]

    async def text_turn(self, text: str = "Hi!") -> list[dict]:
        """A typed turn answered in full: the session is alive and well."""
        await self.send({"type": "conversation.item.create", "item": {
            "type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}})
        await self.send({"type": "response.create", "response": {"output_modalities": ["text"]}})
        events = await self.until("response.done")
        assert events[-1]["response"]["status"] == "completed", events[-1]
        return events

    async def close(self) -> None:
        await self.ws.close()


async def connect(srv, token: Optional[str] = None, origin: Optional[str] = None, headers: Optional[dict] = None,
                  **kw) -> Client:
    extra = dict(headers or {})
    if token:
        extra["Authorization"] = f"Bearer {token}"
    if origin:
        extra["Origin"] = origin
    ws = await websockets.connect(srv.ws_url, additional_headers=extra, max_size=None, **kw)
    client = Client(ws)
    client.created = (await client.until("session.created"))[-1]["session"]
    return client


class NeverReads:
    """A WebSocket client that completes the handshake, sends, and never reads a byte (a small receive buffer, so
    the server's writes back up at once): the slow consumer of issue 13 item 10."""

    def __init__(self, port: int, path: str = "/v1/realtime"):
        self.port, self.path = port, path

    async def __aenter__(self) -> "NeverReads":
        import base64
        import os
        import socket
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", self.port))
        self.reader, self.writer = await asyncio.open_connection(sock=sock)
        key = base64.b64encode(os.urandom(16)).decode()
        self.writer.write(f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nUpgrade: websocket\r\n"
                          f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                          .encode())
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")  # the handshake answer; nothing after it is ever read
        assert b" 101 " in head.split(b"\r\n")[0], head
        return self

    async def send(self, event: dict) -> None:
        import os
        import struct
        data = json.dumps(event).encode()
        n = len(data)
        head = b"\x81" + (bytes([0x80 | n]) if n < 126 else b"\xfe" + struct.pack(">H", n) if n < 65536
                          else b"\xff" + struct.pack(">Q", n))
        mask = os.urandom(4)
        body = (np.frombuffer(data, np.uint8) ^ np.resize(np.frombuffer(mask, np.uint8), n)).tobytes()
        self.writer.write(head + mask + body)
        await self.writer.drain()

    async def __aexit__(self, *exc) -> None:
        self.writer.transport.abort()
