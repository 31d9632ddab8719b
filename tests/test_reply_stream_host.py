"""The stream host's decisions while an answer is still being planned, on engine doubles and a real ProgramOut."""
from __future__ import annotations

import asyncio
import contextlib

import pytest

from engine_doubles import SlowMemory, WordsLLM, engines
from livehost.server.livestream.events import Message
from livehost.server.livestream.host import StreamHost
from livehost.server.livestream.program import ProgramOut


@contextlib.asynccontextmanager
async def hosting(settings, memory):
    s = settings.model_copy(update={"stream": settings.stream.model_copy(update={"gap_s": 0.05, "mic_hold_s": 0.05,
                                                                                 "idle_after_s": 600})})
    program = ProgramOut(rate=48000, fps=5, size=64)
    written: list[int] = []
    write = program.write
    program.write = lambda pcm: (written.append(len(pcm)), write(pcm))  # every sample the viewers would hear
    host = StreamHost(engines(WordsLLM("Nice to see you here. Welcome to the show."), memory), s, program,
                      character="lumi")
    events = host.subscribe()
    tasks = [asyncio.create_task(program.run([])), asyncio.create_task(host.run())]
    try:
        yield host, events, written
    finally:
        memory.release.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def said(events: asyncio.Queue, timeout: float = 5.0) -> dict:
    async def wait():
        while (e := await events.get())["type"] != "livehost.stream.said":
            pass
        return e
    return await asyncio.wait_for(wait(), timeout)


@pytest.mark.parametrize("how", ["streamer_speaks", "skip", "pause_now"])
async def test_the_host_stops_while_it_plans_an_answer(settings, how):
    """Bug 4: a streamer who started speaking while the host planned an answer was talked over; skip and pause
    during planning did nothing."""
    memory = SlowMemory()  # the viewer look-up that planning does is slow
    async with hosting(settings, memory) as (host, events, written):
        host.ingest(Message("twitch", "show", "ann", "Ann", text="hello, how is the stream going?"))
        assert await asyncio.to_thread(memory.entered.wait, 2)  # planning
        if how == "streamer_speaks":
            host.streamer_voice(True)
        elif how == "skip":
            assert host.skip()
        else:
            host.pause(now=True)
        memory.release.set()
        cut = await said(events)
        assert cut["viewer"] == "Ann" and cut["status"] == "cancelled" and cut["text"] == "", cut
        await asyncio.sleep(0.2)
        assert sum(written) == 0  # not one sample of the answer went out
        if how == "streamer_speaks":
            host.streamer_voice(False)
        elif how == "pause_now":
            host.resume()


async def test_an_answer_completes_and_is_heard(settings):
    memory = SlowMemory()
    memory.release.set()
    async with hosting(settings, memory) as (host, events, written):
        host.ingest(Message("twitch", "show", "ann", "Ann", text="hello, how is the stream going?"))
        answer = await said(events)
        assert answer["status"] == "completed" and answer["text"].startswith("Ann"), answer
        assert answer["text"].endswith("Welcome to the show.") and sum(written) > 0
        assert not host.program.speaking  # the answer ended when its voice had played
