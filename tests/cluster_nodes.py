"""The pieces of a real cluster for tests/test_cluster.py: `livehost stream` node processes (the real CLI), nginx as
the load balancer (WebSocket upgrade, failover to the next node), and a double of the LLM tier (an OpenAI-compatible
server that records every prompt and paces its words, so a test can read what a node asked and cut a reply in the
middle). Every node's models are real; only the LLM tier is the double, as a deployment's vLLM would be elsewhere."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

from conftest import RunningServer, _free_port

NGINX = shutil.which("nginx", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
LIVEHOST = str(Path(sys.executable).with_name("livehost"))


class LLMTier:
    """POST /v1/chat/completions (streamed), GET /v1/models. Each node calls it with its own llm.api_key, so a
    recorded request says which node made it."""

    def __init__(self, words: str = "Sure. I am glad you asked me that, and here is my answer for you."):
        self.requests: list[dict] = []  # {"node": api key, "messages": [...]}
        self.words, self.pace_s = words.split(), 0.0
        app = FastAPI()

        @app.get("/v1/models")
        def models() -> dict:
            return {"object": "list", "data": [{"id": "tier-double", "object": "model"}]}

        @app.post("/v1/chat/completions")
        async def complete(request: Request):
            body = await request.json()
            node = request.headers.get("authorization", "").removeprefix("Bearer ")
            self.requests.append({"node": node, "messages": body.get("messages", [])})
            pace = self.pace_s

            async def sse():
                for i, word in enumerate(self.words):
                    chunk = {"choices": [{"index": 0, "delta": {"content": (" " if i else "") + word}}]}
                    yield f"data: {json.dumps(chunk)}\n\n"
                    await asyncio.sleep(pace)
                yield 'data: {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}\n\n'
                yield "data: [DONE]\n\n"
            return StreamingResponse(sse(), media_type="text/event-stream")
        self.server = RunningServer(app, _free_port())
        self.url = self.server.url + "/v1"

    def prompts_from(self, node: str) -> list[str]:
        return [" ".join(str(m.get("content", "")) for m in r["messages"]) for r in self.requests if r["node"] == node]


class Node:
    """One `livehost stream` process (the Realtime API and the livestream host) configured by LIVEHOST_* variables."""

    def __init__(self, name: str, folder: Path, env: dict[str, str]):
        self.name, self.port = name, _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / f"{name}.log"
        folder.mkdir(parents=True, exist_ok=True)
        full = {**os.environ, **env, "LIVEHOST_SERVER__PORT": str(self.port), "LIVEHOST_CLUSTER__NODE_ID": name,
                "LIVEHOST_LLM__API_KEY": name, "LIVEHOST_DATA_DIR": str(folder / name)}
        self.proc = subprocess.Popen([LIVEHOST, "stream"], env=full, stdout=self.log.open("wb"),
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, key: str, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node {self.name} exited ({self.proc.returncode}):\n{self.log_tail()}")
            try:
                if httpx.get(self.url + "/healthz", headers={"Authorization": f"Bearer {key}"}, timeout=2).is_success:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"node {self.name} not ready after {timeout} s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill9()


class LoadBalancer:
    """nginx in front of the nodes: round robin, WebSocket upgrade, the next node when one refuses (its process is
    gone), and the node that answered in an X-Upstream header (tests only; a deployment need not say)."""

    def __init__(self, folder: Path, ports: list[int]):
        folder.mkdir(parents=True, exist_ok=True)
        self.folder, self.port = folder, _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        servers = "\n".join(f"    server 127.0.0.1:{p} max_fails=1 fail_timeout=30s;" for p in ports)
        conf = folder / "nginx.conf"
        conf.write_text(f"""{"user root;" if os.geteuid() == 0 else ""}
daemon off;
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log info;
events {{ worker_connections 256; }}
http {{
  access_log {folder}/access.log;
  client_body_temp_path {folder}/body;
  proxy_temp_path {folder}/proxy;
  fastcgi_temp_path {folder}/fastcgi;
  uwsgi_temp_path {folder}/uwsgi;
  scgi_temp_path {folder}/scgi;
  map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
  upstream livehost {{
{servers}
  }}
  server {{
    listen 127.0.0.1:{self.port};
    location / {{
      proxy_pass http://livehost;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_connect_timeout 2s;
      proxy_read_timeout 1h;
      proxy_next_upstream error timeout;
      add_header X-Upstream $upstream_addr always;
    }}
  }}
}}
""")
        self.proc = subprocess.Popen([NGINX, "-c", str(conf), "-p", str(folder), "-e", str(folder / "error.log")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.get(self.url + "/nginx-probe", timeout=0.5)
                return
            except httpx.HTTPError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"nginx did not start: {(folder / 'error.log').read_text()[-2000:]}")
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def upstream_port(headers) -> Optional[int]:
    """The node that answered through nginx (the last address tried, after any that refused)."""
    value = headers.get("x-upstream") or ""
    last = value.split(",")[-1].strip()
    return int(last.rsplit(":", 1)[1]) if ":" in last else None
