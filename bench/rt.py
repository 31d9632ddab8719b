"""Shared by the Realtime benches: the server as a subprocess, a live microphone, the event stream, /metrics."""
from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Optional

import httpx
import numpy as np

from common import RATE, ROOT, Phrase

CHUNK_MS = 100  # per append by default, like a browser client batching its audio worklet's output


class Server:
    """`livehost serve --port P` as a subprocess (environment passed through, plus `env`), or an existing --url."""

    def __init__(self, url: Optional[str] = None, env: Optional[dict] = None, pid: Optional[int] = None,
                 command: Optional[list[str]] = None, log_level: str = "warning"):
        self.proc, self.pid, self.env, self.load_s = None, pid, env or {}, None
        self.command = command or ["serve"]  # e.g. ["stream", "--rtmp", "out.flv"]
        self.url = url.rstrip("/") if url else None
        self.log, self.log_level = None, log_level

    def __enter__(self) -> "Server":
        if self.url:
            return self
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        exe = shutil.which("livehost") or str(Path(sys.executable).with_name("livehost"))
        self.log = tempfile.NamedTemporaryFile("w+", prefix="livehost-bench-", suffix=".log", delete=False)
        started = time.perf_counter()
        self.proc = subprocess.Popen([exe, *self.command, "--port", str(port), "--log-level", self.log_level], cwd=ROOT,
                                     env={**os.environ, **self.env}, stdout=self.log, stderr=subprocess.STDOUT)
        self.pid, self.url = self.proc.pid, f"http://127.0.0.1:{port}"
        while time.perf_counter() - started < 600:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}; see {self.log.name}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    self.load_s = time.perf_counter() - started
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the server did not answer /healthz in 600 s; see {self.log.name}")

    def __exit__(self, *exc) -> None:
        if self.proc:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    @property
    def ws_url(self) -> str:
        return self.url.replace("http", "ws", 1) + "/v1/realtime?model=livehost"

    def metrics(self) -> dict[str, tuple[float, float, str]]:
        """Every histogram's (sum, count, help text), from /metrics."""
        from prometheus_client.parser import text_string_to_metric_families
        out = {}
        for family in text_string_to_metric_families(httpx.get(self.url + "/metrics", timeout=10).text):
            if family.type == "histogram":
                sums = {s.name: s.value for s in family.samples if s.name.endswith(("_sum", "_count"))}
                out[family.name] = (sums.get(family.name + "_sum", 0.0), sums.get(family.name + "_count", 0.0),
                                    family.documentation)
        return out


def metric_means(before: dict, after: dict) -> dict[str, tuple[float, int, str]]:
    """Mean, count and help text of each histogram over what happened between two scrapes."""
    out = {}
    for name, (s, c, doc) in after.items():
        s0, c0, _ = before.get(name, (0.0, 0.0, ""))
        if c - c0 > 0:
            out[name] = ((s - s0) / (c - c0), int(c - c0), doc)
    return out


class CpuMeter:
    """CPU used on the whole machine, by the given processes, and so by everything else (other jobs)."""

    def __init__(self, pids: list[int]):
        self.pids = [p for p in pids if p]
        self.start = self.last = self._read()

    @staticmethod
    def _busy() -> float:
        f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
        return (sum(f[:8]) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait

    def _read(self) -> tuple[float, float, float]:
        ours = 0.0
        for pid in self.pids:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            ours += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
        return time.perf_counter(), self._busy(), ours

    @staticmethod
    def _cores(a, b) -> tuple[float, float]:
        wall = b[0] - a[0]
        return (b[1] - a[1]) / wall, (b[2] - a[2]) / wall

    def lap(self) -> float:
        """Cores that other processes used on average since the last lap."""
        now = self._read()
        total, ours = self._cores(self.last, now)
        self.last = now
        return max(0.0, total - ours)

    async def until_quiet(self, max_cores: float, timeout_s: float = 90.0, step_s: float = 2.0) -> float:
        """Wait until other processes use fewer than max_cores over step_s (at most timeout_s); seconds waited."""
        started = time.perf_counter()
        self.lap()
        while time.perf_counter() - started < timeout_s:
            await asyncio.sleep(step_s)
            if self.lap() < max_cores:
                break
        return time.perf_counter() - started

    def report(self) -> str:
        total, mine = self._cores(self.start, self._read())
        return f"{total:.2f} of {os.cpu_count()} cores busy on average ({mine:.2f} server + bench, {total - mine:.2f} others)"


class Mic:
    """A live microphone: chunk_ms of PCM16 every chunk_ms by the wall clock; silence when nobody talks."""

    def __init__(self, ws, chunk_ms: int = CHUNK_MS):
        self.ws, self.chunk = ws, RATE * chunk_ms // 1000
        self.queue: deque = deque()  # (phrase, marks) to say, in order
        self.current, self.pos, self.marks = None, 0, {}
        self.task: Optional[asyncio.Task] = None

    def say(self, phrase: Phrase) -> dict[str, asyncio.Future]:
        """Queue a phrase; the futures get the wall time the chunk holding its first / last voiced sample left,
        and the time its last chunk left."""
        loop = asyncio.get_running_loop()
        marks = {k: loop.create_future() for k in ("onset", "end", "done")}
        self.queue.append((phrase, marks))
        return marks

    def _next(self) -> tuple[np.ndarray, list]:
        if self.current is None and self.queue:
            (self.current, self.marks), self.pos = self.queue.popleft(), 0
        if self.current is None:
            return np.zeros(self.chunk, np.int16), []
        p, a, b = self.current, self.pos, self.pos + self.chunk
        chunk = np.zeros(self.chunk, np.int16)
        chunk[: len(p.pcm[a:b])] = p.pcm[a:b]
        hit = [self.marks["onset"]] if a <= p.onset < b else []
        hit += [self.marks["end"]] if a <= p.end - 1 < b else []
        self.pos = b
        if b >= len(p.pcm):
            hit.append(self.marks["done"])
            self.current = None
        return chunk, hit

    async def run(self) -> None:
        t0, k = time.perf_counter(), 0
        while True:
            chunk, hit = self._next()
            audio = base64.b64encode(chunk.astype("<i2").tobytes()).decode()
            await self.ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": audio}))
            now = time.perf_counter()
            for fut in hit:
                fut.set_result(now)
            k += 1
            await asyncio.sleep(max(0.0, t0 + k * self.chunk / RATE - time.perf_counter()))

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.run())


class Events:
    """Server events with the wall time each arrived, read as they come."""

    def __init__(self, ws):
        self.ws, self.queue = ws, asyncio.Queue()
        self.errors: list[dict] = []
        self.task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            t = time.perf_counter()
            event = json.loads(message)
            if event.get("type") == "error":
                self.errors.append(event["error"])
                print("server error:", event["error"].get("code"), event["error"].get("message"), file=sys.stderr)
            self.queue.put_nowait((t, event))

    async def next(self, timeout: float) -> tuple[float, dict]:
        return await asyncio.wait_for(self.queue.get(), timeout)

    async def until(self, kind: str, timeout: float) -> list[tuple[float, dict]]:
        got = []
        while True:
            got.append(await self.next(timeout))
            if got[-1][1]["type"] == kind:
                return got

    def drain(self) -> list[tuple[float, dict]]:
        got = []
        while not self.queue.empty():
            got.append(self.queue.get_nowait())
        return got


def audio_seconds(delta_b64: str) -> float:
    """Length of a base64 PCM16 24 kHz delta, without decoding it."""
    return (len(delta_b64) * 3 // 4 - delta_b64[-2:].count("=")) / 2 / RATE
