"""The streamer's own microphone: when they talk, the host stops and listens (barge-in), and what they said
becomes context for the host's next words. The same ears as a conversation (Silero VAD + Whisper, shared models)."""
from __future__ import annotations

import logging
from typing import Any

import numpy as np

from livehost.server.protocol import new_id
from livehost.speech.audio import AudioFormatError, Resampler, int16_to_float32
from livehost.speech.listener import Listener, ListenerConfig

log = logging.getLogger("livehost.stream.mic")


class StreamerMic:
    def __init__(self, engines: Any, settings: Any, host: Any, rate: int = 16000):
        if not 8000 <= rate <= 96000:
            raise AudioFormatError(f"microphone rate {rate} Hz is not supported (8000-96000)")
        self.host, self.rate = host, rate
        vad, asr = settings.vad, settings.asr
        config = ListenerConfig(vad.threshold, vad.min_speech_ms, vad.silence_ms, vad.prefix_padding_ms,
                                asr.partial_interval_ms, settings.server.max_buffer_seconds,
                                asr.language_for(getattr(host, "character", None)))
        self.listener = Listener(engines.vad, engines.asr, config, self._on_listener, lambda: new_id("item"))
        self._resampler = Resampler(rate, 16000)

    async def feed(self, pcm16: bytes) -> None:
        """Raw 16-bit little-endian mono PCM at `rate`."""
        if len(pcm16) % 2:
            raise AudioFormatError(f"pcm16 audio must have an even number of bytes, got {len(pcm16)}")
        samples = self._resampler.process(np.frombuffer(pcm16, dtype="<i2"))
        await self.listener.feed(int16_to_float32(samples))

    def _on_listener(self, kind: str, data: dict) -> None:
        if kind == "speech_started":
            log.info("the streamer is speaking: the host listens")
            self.host.streamer_voice(True)
        elif kind == "speech_stopped":
            self.host.streamer_voice(False)
        elif kind == "final":
            self.host.streamer_said(data["transcript"])

    async def close(self) -> None:
        await self.listener.close()
        self.host.streamer_voice(False)
