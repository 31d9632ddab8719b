"""A short soak of `livehost serve` with real models: a few well-behaved clients talk in turns while abusive ones
come and go (a client that never reads its events, one that sends junk, one that opens sessions and vanishes).
Every window it records the server's RSS, /healthz latency and the turns' first-audio and done latencies, and
reports the trends: does memory come back, do latencies drift, is everyone still served?

    .venv/bin/python bench/soak.py --minutes 3 --clients 2 --write
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import socket
import struct
import time
from pathlib import Path

import httpx
import numpy as np
import websockets

from common import load_avg, machine, ms, stats, table, write_section
from rt import Server

QUESTIONS = ["What is your favourite colour?", "Tell me a fun fact.", "How are you today?", "Say something nice."]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def talker(url: str, stop: float, turns: list, rng: random.Random) -> None:
    """A good client: a typed question, the spoken answer read in full, again."""
    while time.monotonic() < stop:
        try:
            async with websockets.connect(url, max_size=None) as ws:
                await ws.recv()  # session.created
                for _ in range(5):
                    if time.monotonic() >= stop:
                        return
                    await ws.send(json.dumps({"type": "conversation.item.create", "item": {
                        "type": "message", "role": "user",
                        "content": [{"type": "input_text", "text": rng.choice(QUESTIONS)}]}}))
                    started, first = time.monotonic(), None
                    await ws.send(json.dumps({"type": "response.create", "response": {"max_output_tokens": 30}}))
                    while True:
                        event = json.loads(await asyncio.wait_for(ws.recv(), 120))
                        if event["type"] == "response.output_audio.delta" and first is None:
                            first = time.monotonic() - started
                        if event["type"] == "error" and event["error"]["code"] == "server_busy":
                            turns.append((time.monotonic(), None, None, "busy"))
                            await asyncio.sleep(1)
                            break
                        if event["type"] == "response.done":
                            turns.append((time.monotonic(), first, time.monotonic() - started,
                                          event["response"]["status"]))
                            break
        except (websockets.exceptions.WebSocketException, OSError, asyncio.TimeoutError) as exc:
            turns.append((time.monotonic(), None, None, f"lost: {type(exc).__name__}"))
            await asyncio.sleep(1)


async def never_reads(port: int, events: int) -> None:
    """A client that asks for a lot (each item comes back twice) and never reads a byte of it: the handshake by
    hand on a socket with a tiny receive buffer, then masked text frames."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    try:
        writer.write(f"GET /v1/realtime HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                     f"Connection: Upgrade\r\nSec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
                     f"Sec-WebSocket-Version: 13\r\n\r\n".encode())
        await reader.readuntil(b"\r\n\r\n")
        data = json.dumps({"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": [
            {"type": "input_text", "text": "spam " * 6000}]}}).encode()
        mask = os.urandom(4)
        frame = b"\x81\xff" + struct.pack(">Q", len(data)) + mask + (
            np.frombuffer(data, np.uint8) ^ np.resize(np.frombuffer(mask, np.uint8), len(data))).tobytes()
        for _ in range(events):
            writer.write(frame)
            await asyncio.wait_for(writer.drain(), 5)
    finally:
        writer.transport.abort()


async def abuser(url: str, stop: float, counts: dict, rng: random.Random) -> None:
    """Bad clients in turn: one that never reads, one that sends junk, one that opens and vanishes."""
    port = int(url.split(":")[2].split("/")[0])
    while time.monotonic() < stop:
        kind = rng.choice(["slow", "junk", "vanish"])
        counts[kind] = counts.get(kind, 0) + 1
        try:
            if kind == "slow":  # until it is let go (server.max_outbox_bytes, 8 MiB, plus the socket buffers)
                await never_reads(port, 600)
                continue
            async with websockets.connect(url, max_size=None, max_queue=1) as ws:
                if kind == "junk":
                    for _ in range(50):
                        await ws.send(rng.choice(["{oops", "[" * 2000, '{"type": "session.update", "session": '
                                                  '{"instructions": "\\ud800"}}', '{"type": 5}']))
                    await asyncio.sleep(0.5)
        except (websockets.exceptions.WebSocketException, OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            pass  # being let go is the point
        await asyncio.sleep(2)


async def run(args) -> str:
    rng = random.Random(13)
    with Server(url=args.url, pid=args.pid) as server:
        url = server.url.replace("http", "ws", 1) + "/v1/realtime?model=livehost"
        load_before = load_avg()
        start = time.monotonic()
        stop = start + args.minutes * 60
        turns: list = []
        counts: dict = {}
        tasks = [asyncio.create_task(talker(url, stop, turns, random.Random(i))) for i in range(args.clients)]
        tasks.append(asyncio.create_task(abuser(url, stop, counts, rng)))
        windows = []
        async with httpx.AsyncClient(base_url=server.url) as http:
            while time.monotonic() < stop:
                await asyncio.sleep(args.window)
                t0 = time.monotonic()
                health = (await http.get("/healthz", timeout=30)).json()
                windows.append((time.monotonic() - start, rss_mb(server.pid), time.monotonic() - t0,
                                health["sessions"]))
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.sleep(3)
            health = (await http.get("/healthz", timeout=30)).json()
            text = (await http.get("/metrics", timeout=30)).text
        slow = sum(float(l.split()[-1]) for l in text.splitlines() if l.startswith("livehost_slow_clients_total{"))
        end_rss = rss_mb(server.pid)
    rows = []
    for i, (at, rss, health_s, sessions) in enumerate(windows):
        lo = start + (windows[i - 1][0] if i else 0)
        done = [t for t in turns if lo <= t[0] < start + at and t[1] is not None]
        firsts = stats([t[1] for t in done]) if done else None
        rows.append([f"{at:.0f}", f"{rss:.0f}", ms(health_s), sessions, len(done),
                     f"{ms(firsts['p50'])} / {ms(firsts['p95'])}" if firsts else "-"])
    thirds = [windows[min(len(windows) - 1, i * len(windows) // 3)][1] for i in range(3)]
    done = [t for t in turns if t[1] is not None]
    third = max(1, len(done) // 3)
    early, late = stats([t[1] for t in done[:third]]), stats([t[1] for t in done[-third:]])
    other = sorted({t[3] for t in turns} - {"completed"})
    return "\n".join([
        f"## soak ({args.minutes:g} min, {args.clients} talking clients + abusive ones)", "",
        f"{machine()}; load average before {load_before}, after {load_avg()}", "",
        table(["t (s)", "RSS (MB)", "/healthz", "sessions", "turns", "first audio p50 / p95"], rows), "",
        f"- turns: {len(done)} answered, {len(turns) - len(done)} not ({', '.join(other) or 'none'}); "
        f"first audio p50 {ms(early['p50'])} in the first third, {ms(late['p50'])} in the last",
        f"- RSS: {thirds[0]:.0f} MB at the start, {thirds[1]:.0f} MB a third in, {thirds[2]:.0f} MB two thirds in, "
        f"{end_rss:.0f} MB at the end",
        f"- abusive clients: {counts}; {slow:.0f} disconnected as slow consumers; sessions open at the end: "
        f"{health['sessions']}",
    ])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=3)
    p.add_argument("--clients", type=int, default=2)
    p.add_argument("--window", type=float, default=20, help="seconds per sample")
    p.add_argument("--url", help="a running server instead of starting one")
    p.add_argument("--pid", type=int, help="its process id (for RSS)")
    p.add_argument("--write", action="store_true", help="replace the soak section of RESULTS.md")
    args = p.parse_args()
    report = asyncio.run(run(args))
    print(report)
    if args.write:
        write_section("soak", report)


if __name__ == "__main__":
    main()
