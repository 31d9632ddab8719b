"""The stream encoder, run in its own process by `RtmpPublisher`: raw frames in over a pipe, FLV out to the URL.

Why a process and not a thread: PyAV opens the output (TCP connect and RTMP handshake) while holding the GIL and
with no timeout: starting a stream to a local nginx froze the whole host process for 170 ms, and a server that
accepts the connection but never answers froze it for good. In a process of its own the encoder can hang, crash
or use a core without the host missing a beat; the publisher kills it when it stops answering.

It is started as `python -m livehost.server.livestream.encoder` (not multiprocessing's spawn, which re-imports
the parent's main script and fails in one without a `__main__` guard), and talks over its stdin and stdout with
multiprocessing's pickled messages. The settings come as the first message, not on the command line, where the
stream key would show in every `ps` listing.

Messages in: the settings (a dict of `run`'s keywords), then ("a", pts_samples, int16 pcm) and
("v", pts_frames, rgb24 array), None to finish.
Messages out: ("ready",) once connected, ("stats", video_frames, audio_frames, cpu_s) each second of video,
("done", video_frames, audio_frames, cpu_s) after the trailer, or ("error", message).
"""
from __future__ import annotations

import os
import signal
import time
from fractions import Fraction
from multiprocessing.connection import Connection
from typing import Any

import av


def main() -> None:
    inbox = Connection(os.dup(0), writable=False)
    out = os.dup(1)
    os.dup2(2, 1)  # a stray print must not land in the message pipe
    outbox = Connection(out, readable=False)
    try:
        settings = inbox.recv()
    except EOFError:
        return
    run(inbox, outbox, **settings)


def run(inbox: Connection, outbox: Connection, url: str, fmt: str | None, rate: int, fps: int, size: tuple[int, int],
        video_bitrate: int, audio_bitrate: int, preset: str) -> None:
    """The child process's main: encode until None arrives, the parent goes away, or writing fails."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it finishes the stream
    container = None
    try:
        container = av.open(url, "w", format=fmt)
        video, audio = _add_streams(container, rate, fps, size, video_bitrate, audio_bitrate, preset)
        container.start_encoding()  # connects and writes the header now, so "ready" means the server took it
        outbox.send(("ready",))
        cpu0, counts = time.process_time(), {"v": 0, "a": 0}
        while (msg := inbox.recv()) is not None:
            kind, pts, data = msg
            if kind == "v":
                frame = av.VideoFrame.from_ndarray(data, format="rgb24")  # PyAV converts to yuv420p
                frame.pts, frame.time_base = pts, Fraction(1, fps)
                packets = video.encode(frame)
            else:
                frame = av.AudioFrame.from_ndarray(data.reshape(1, -1), format="s16", layout="mono")
                frame.sample_rate, frame.pts, frame.time_base = rate, pts, Fraction(1, rate)
                packets = audio.encode(frame)  # PyAV re-chunks 20 ms frames into AAC's 1024 samples
            for packet in packets:
                container.mux(packet)
            counts[kind] += 1
            if kind == "v" and counts["v"] % fps == 0:
                outbox.send(("stats", counts["v"], counts["a"], time.process_time() - cpu0))
        for stream in (video, audio):  # the end: drain the encoders, then the trailer on close
            for packet in stream.encode(None):
                container.mux(packet)
        container.close()
        container = None
        outbox.send(("done", counts["v"], counts["a"], time.process_time() - cpu0))
    except (EOFError, BrokenPipeError):
        pass  # the parent went away: nobody to report to
    except Exception as e:  # av.error.* (refused, reset, broken pipe), a bad URL or format
        try:
            outbox.send(("error", str(e) or type(e).__name__))
        except OSError:
            pass
    finally:
        if container is not None:
            try:
                container.close()
            except Exception:
                pass  # a dead connection cannot take its trailer


def _add_streams(container: Any, rate: int, fps: int, size: tuple[int, int], video_bitrate: int,
                 audio_bitrate: int, preset: str) -> tuple[Any, Any]:
    video = container.add_stream("libx264", rate=fps)
    video.width, video.height = size
    video.pix_fmt, video.bit_rate = "yuv420p", video_bitrate
    video.codec_context.time_base = Fraction(1, fps)
    video.codec_context.gop_size = 2 * fps  # a keyframe every 2 s: what live platforms ask for
    video.codec_context.thread_count = 1  # one core at most: the box also runs the LLM and TTS
    video.options = {"preset": preset, "tune": "zerolatency", "x264-params": "scenecut=0"}
    audio = container.add_stream("aac", rate=rate, layout="mono")
    audio.bit_rate = audio_bitrate
    return video, audio


if __name__ == "__main__":
    main()
