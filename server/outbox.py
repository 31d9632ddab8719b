"""A session's outgoing events, bounded in bytes: a client that does not read cannot grow the server.

Events queue here while the transport sends; a client that stops reading fills it up to server.max_outbox_bytes,
and then the outbox stops taking events and sets `overflowed`: the transport disconnects that client (a slow
consumer), counted in livehost_slow_clients_total. A client that keeps up never comes close: reply audio is paced
to real time, a few hundred ms ahead.
"""
from __future__ import annotations

import asyncio

from livehost.server import metrics

def event_cost(event: dict) -> int:
    """About how many bytes the event takes as JSON: every string in it (audio, frames, an item's text) plus a
    little per value. A walk, not a json.dumps: the writer serializes each event once, later."""
    cost, stack = 0, [event]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            cost += len(value) + 4
        elif isinstance(value, dict):
            cost += 2 + sum(len(k) + 4 for k in value)
            stack.extend(value.values())
        elif isinstance(value, (list, tuple)):
            cost += 2
            stack.extend(value)
        else:
            cost += 8
    return cost


class Outbox(asyncio.Queue):
    def __init__(self, max_bytes: int, transport: str = "websocket"):
        super().__init__()
        self.max_bytes, self.transport = max_bytes, transport
        self.bytes = 0
        self.overflowed = asyncio.Event()

    def _put(self, item) -> None:
        self.bytes += event_cost(item)
        super()._put(item)

    def _get(self):
        item = super()._get()
        self.bytes -= event_cost(item)
        return item

    def put_nowait(self, item) -> None:
        if self.overflowed.is_set():
            return  # the client is being disconnected: nothing more is kept for it
        if self.bytes + event_cost(item) > self.max_bytes and not self.empty():
            self.overflowed.set()
            metrics.SLOW_CLIENTS.labels(self.transport).inc()
            return
        super().put_nowait(item)
