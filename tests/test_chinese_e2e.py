"""Chinese end to end on the real server and real models: Mandarin speech (made by the voice itself, with noise)
into /v1/realtime, talking to nuomi; a Chinese transcript (Whisper base, zh), a Chinese reply (Qwen2.5-0.5B) and
Chinese audio (the Mandarin voice) that Whisper hears back as Chinese. Needs the [zh] extra."""
from __future__ import annotations

import asyncio
import base64
import sys
from pathlib import Path

import numpy as np
import pytest

from livehost.speech import tts_zh

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(tts_zh.voice_problem() is not None, reason=str(tts_zh.voice_problem()))]
SENTENCE = "你好，请问退货期限是多久？"
CHUNK = 2400  # 100 ms at 24 kHz


def _cjk(text: str) -> int:
    return sum("\u4e00" <= c <= "\u9fff" for c in text)


@pytest.fixture(scope="module")
def zh(tmp_path_factory):
    """Settings and engines for a Chinese host, nuomi, as a new user starts one: the defaults give her Whisper base
    (zh, from her card) and Qwen2.5-0.5B (llm.model auto)."""
    from livehost.server.config import load_settings
    from livehost.server.engines import Engines

    settings = load_settings(overrides={
        "data_dir": str(tmp_path_factory.mktemp("zh-data")), "memory": {"enabled": False},
        "llm": {"max_tokens": 40}, "persona": {"character": "nuomi"}})  # the rest follows from her card
    return settings, Engines.load(settings, progress=False)


@pytest.fixture(scope="module")
def zh_server(zh):
    from conftest import RunningServer, _free_port
    from livehost.server.app import create_app

    settings, engines = zh
    with RunningServer(create_app(settings, engines), _free_port()) as running:
        yield running, engines


def _noisy_speech() -> np.ndarray:
    voice = tts_zh.ZhTTS()
    pcm = np.concatenate([c.audio for c in voice.synthesize(SENTENCE)]).astype(np.float32)
    rng = np.random.default_rng(16)
    lead, tail = np.zeros(int(0.5 * 24000), np.float32), np.zeros(int(2.5 * 24000), np.float32)
    audio = np.concatenate([lead, pcm, tail])
    audio += rng.normal(0, 0.02 * np.abs(pcm).max(), len(audio))  # a noise floor 34 dB under the voice's peak
    return np.clip(audio, -32768, 32767).astype(np.int16)


async def test_a_chinese_voice_turn_is_heard_answered_and_spoken_in_chinese(zh_server):
    from hardening_doubles import connect
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    import tts_zh as bench

    server, engines = zh_server
    speech = _noisy_speech()
    client = await connect(server)
    assert client.created["livehost"]["character"] == "nuomi"
    await client.send({"type": "session.update", "session": {"type": "realtime", "audio": {
        "input": {"turn_detection": {"type": "server_vad", "silence_duration_ms": 800}}}}})
    await client.until("session.updated")

    async def speak():
        for i in range(0, len(speech), CHUNK):
            await client.send({"type": "input_audio_buffer.append",
                               "audio": base64.b64encode(speech[i:i + CHUNK].tobytes()).decode()})
            await asyncio.sleep(0.05)  # twice real time
    sender = asyncio.create_task(speak())
    events = await client.until("response.done", timeout=180)
    await sender
    await client.close()

    heard = next(e for e in events if e["type"] == "conversation.item.input_audio_transcription.completed")
    errors, chars = bench.cer(SENTENCE, heard["transcript"], bench._simplified())
    # The voice samples noise inside its model, so this sentence sounds a little different each run: offline, 13 of
    # 14 syntheses came back at CER 0.09 and one at 0.36 ("1号请论退货期限时多久"), as a CI run did. English or garbage
    # would be near 1.0.
    assert errors / chars <= 0.5, heard["transcript"]
    done = events[-1]["response"]
    assert done["status"] == "completed", done
    said = next(e for e in events if e["type"] == "response.output_audio_transcript.done")["transcript"]
    assert _cjk(said) >= 2, said
    audio = np.frombuffer(b"".join(base64.b64decode(e["delta"]) for e in events
                                   if e["type"] == "response.output_audio.delta"), np.int16)
    assert len(audio) > 24000 * 0.5
    from livehost.speech.audio import resample
    back = engines.asr.transcribe(resample(audio, 24000, 16000), language="zh").text
    assert _cjk(back) >= 2, back
    # Sounds, not characters: Whisper base heard 退货期限为3天 as 推过七显为三天 in a CI run (CER 4/7, pinyin 1/7), and
    # 退货期限是一周 as 蹲过七线是一张 in 1 of 8 runs here (pinyin 3/7). Silence, noise or English would be near 1.0.
    errors, syllables = bench.syllable_errors(said, back, bench._simplified())
    assert errors / syllables <= 0.6, (said, back)


async def test_the_stream_host_reads_a_chinese_danmaku_and_answers_it_aloud(zh, tmp_path, monkeypatch):
    """A Bilibili room (a local server speaking the danmaku protocol) sends one message in Chinese; nuomi answers
    it, and the answer on the recorded stream is Chinese that Whisper hears."""
    import functools

    import httpx
    import websockets

    from conftest import RunningServer, _free_port
    from livehost.server.app import create_app
    from livehost.server.livestream import bilibili as bl
    from livehost.server.livestream import bilibili_client
    from test_livestream_bilibili import DANMU, ROOM, cmd
    from test_livestream_bilibili_client import FakeRoom, accept
    from test_livestream_e2e import _collect, _transcribe, wait_for

    settings, engines = zh
    room = FakeRoom()
    url = await room.start()
    monkeypatch.setattr(bilibili_client, "BilibiliChat", functools.partial(bilibili_client.BilibiliChat, url=url))
    recorded = tmp_path / "zh.flv"
    s = settings.model_copy(update={
        "stream": settings.stream.model_copy(update={
            "character": "nuomi", "bilibili": int(ROOM), "rtmp": str(recorded), "size": 128, "captions": True,
            "idle_after_s": 600, "gap_s": 0.2}),
        "server": settings.server.model_copy(update={"api_keys": ["sk-zh"]})})
    auth = {"Authorization": "Bearer sk-zh"}
    app = create_app(s, engines, stream=True)
    said: list[dict] = []
    with RunningServer(app, _free_port()) as server:
        ws = await room.next_conn()
        await accept(ws)
        async with websockets.connect(server.url.replace("http", "ws") + "/v1/stream/events",
                                      additional_headers=auth) as events:
            collector = asyncio.create_task(_collect(events, said))
            await ws.send(bl.encode_batch([cmd(DANMU)]))  # 小明: 主播好！今天玩什么？
            await wait_for(lambda: _done(said), 120, "nuomi's answer")
            collector.cancel()
        async with httpx.AsyncClient(base_url=server.url, headers=auth) as http:
            await http.post("/v1/stream/pause")
        await asyncio.sleep(1.0)  # the answer's tail reaches the recording
    room.server.close()
    answer = next(x for x in said if x["kind"] == "chat")
    assert answer["viewer"] == "小明" and _cjk(answer["text"]) >= 2, answer
    heard = _transcribe(engines.asr, recorded)
    assert _cjk(heard) >= 2, heard  # Whisper base (language zh) hears Chinese on the stream


async def _done(said: list) -> bool:
    return any(x["kind"] == "chat" for x in said)
