"""Shared by the bench scripts: real speech cut into phrases, statistics, machine facts, RESULTS.md sections."""
from __future__ import annotations

import datetime
import hashlib
import os
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "RESULTS.md"
AUDIO = ROOT / "tests" / "fixtures" / "audio"  # the same real speech the tests use
RATE = 24000  # what the client sends (the Realtime default, audio/pcm 24 kHz)
FRAME16 = 512  # Silero's frame at 16 kHz: 32 ms
ENGLISH_END_S = 29.5  # multilingual.mp3 reads the MIT licence in English until ~29 s, then in German (checked by ASR)


@dataclass
class Phrase:
    name: str
    pcm: np.ndarray  # int16 mono 24 kHz: the phrase with a little room tone either side
    onset: int  # sample index of the first voiced sample (energy, near Silero's first voiced frame)
    end: int  # sample index just after the last voiced sample (energy, within the VAD's last frame or two)
    vad_end: int  # the same by Silero alone (32 ms frames), for comparison

    @property
    def voiced_s(self) -> float:
        return (self.end - self.onset) / RATE


def load_jfk() -> np.ndarray:
    import soundfile as sf
    import soxr
    audio, sr = sf.read(AUDIO / "jfk.flac", dtype="float32", always_2d=True)  # stereo 44.1 kHz
    return _int16(soxr.resample(audio.mean(axis=1), sr, RATE))


def load_multilingual_english() -> np.ndarray:
    import av  # soundfile cannot read mp3
    out = []
    with av.open(str(AUDIO / "multilingual.mp3")) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE)
        for frame in container.decode(audio=0):
            out += [f.to_ndarray()[0] for f in resampler.resample(frame)]
    return _int16(np.concatenate(out)[: int(ENGLISH_END_S * RATE)])


def _int16(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, -1, 1) * 32767).astype(np.int16)


def voiced_frames(pcm24: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Silero (the server's own VAD model) per 32 ms frame at 16 kHz, with the server's hysteresis."""
    import soxr
    from livehost.speech.vad import VAD
    x = soxr.resample(pcm24.astype(np.float32) / 32768, RATE, 16000)
    stream = VAD.create("silero").stream()
    voiced, state = [], False
    for i in range(0, len(x) // FRAME16 * FRAME16, FRAME16):
        p = stream.probability(x[i:i + FRAME16])
        state = True if p >= threshold else (False if p < threshold - 0.15 else state)
        voiced.append(state)
    return np.array(voiced, bool)


def _loud(pcm: np.ndarray, a: int, b: int, ref_db: float) -> np.ndarray:
    """Indexes of the 10 ms windows of pcm[a:b] within 30 dB of ref_db (the phrase's loudest 10 ms)."""
    win = RATE // 100
    x = pcm[a:b].astype(np.float32)
    rms = np.sqrt(np.mean(x[: len(x) // win * win].reshape(-1, win) ** 2, axis=1)) + 1e-3
    return np.nonzero(20 * np.log10(rms) >= ref_db - 30)[0]


def _peak_db(pcm: np.ndarray, a: int, b: int) -> float:
    win = RATE // 100
    x = pcm[a:b].astype(np.float32)
    return float(20 * np.log10(np.sqrt(np.mean(x[: len(x) // win * win].reshape(-1, win) ** 2, axis=1)).max() + 1e-3))


def _refine(pcm: np.ndarray, onset: int, end: int) -> tuple[int, int]:
    """Move Silero's 32 ms frame edges to where the sound starts and ends (10 ms windows, 30 dB below the peak).

    Silero's probability rises a little late and lingers a frame or two after the voice stops.
    """
    win, frame, ref = RATE // 100, RATE * FRAME16 // 16000, _peak_db(pcm, onset, end)
    a = max(0, onset - 2 * frame)
    loud = _loud(pcm, a, onset + frame, ref)
    new_onset = a + int(loud[0]) * win if len(loud) else onset
    b = max(new_onset, end - 3 * frame)
    loud = _loud(pcm, b, end, ref)
    return new_onset, (b + (int(loud[-1]) + 1) * win if len(loud) else end)


def cut_phrases(pcm: np.ndarray, name: str, min_gap_s: float = 0.32, min_voiced_s: float = 0.6,
                pad_s: float = 0.2) -> list[Phrase]:
    """Phrases = voiced runs split at pauses >= min_gap_s (shorter than the server's 400 ms, so the server never
    splits a phrase in two); each keeps up to pad_s of its own room tone either side."""
    v = voiced_frames(pcm)
    spf = RATE * FRAME16 // 16000  # 24 kHz samples per 32 ms frame
    runs, start, gap = [], None, 0
    for i, on in enumerate(np.append(v, False)):
        if on:
            start, gap = (i if start is None else start), 0
        elif start is not None:
            gap += 1
            if gap * 0.032 >= min_gap_s or i == len(v):
                runs.append((start, i - gap + 1))
                start, gap = None, 0
    phrases, pad = [], int(pad_s * RATE)
    for k, (a, b) in enumerate(runs):
        onset, end = a * spf, b * spf
        if (end - onset) / RATE < min_voiced_s:
            continue
        lo = max(0, onset - pad, runs[k - 1][1] * spf if k else 0)
        hi = min(len(pcm), end + pad, runs[k + 1][0] * spf if k + 1 < len(runs) else len(pcm))
        e_onset, e_end = _refine(pcm, onset, end)
        phrases.append(Phrase(f"{name}@{onset / RATE:.1f}s", pcm[lo:hi].copy(), e_onset - lo, e_end - lo, end - lo))
    return phrases


def all_phrases() -> list[Phrase]:
    """The jfk phrases, then the English phrases of multilingual.mp3."""
    # The licence is read almost without a breath: its phrases end at shorter pauses than the speech's.
    return cut_phrases(load_jfk(), "jfk") + cut_phrases(load_multilingual_english(), "mit", min_gap_s=0.16)


# ---- numbers ---------------------------------------------------------------------------------------------------------

def stats(values: list[float]) -> dict:
    v = np.array([x for x in values if x is not None], float)
    if not len(v):
        return {"n": 0, "p50": float("nan"), "p95": float("nan"), "mean": float("nan"), "max": float("nan")}
    return {"n": len(v), "p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95)),
            "mean": float(v.mean()), "max": float(v.max()), "min": float(v.min())}


def ms(x: float) -> str:
    return "n/a" if x != x else f"{1000 * x:.0f}"


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# ---- the machine -----------------------------------------------------------------------------------------------------

def load_avg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def busy_cores(window_s: float = 5.0) -> float:
    """Cores busy on average over the next window_s seconds (all processes, from /proc/stat)."""
    def busy() -> float:
        f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
        return (sum(f[:8]) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK")
    b0, t0 = busy(), time.perf_counter()
    time.sleep(window_s)
    return (busy() - b0) / (time.perf_counter() - t0)


_LOCK = None  # held until this process exits


def wait_for_quiet(max_cores: float, timeout_s: float = 900) -> None:
    """Wait for any other bench script to finish (a lock file), then (at most timeout_s) until the machine's other
    work uses under max_cores; say how it went."""
    global _LOCK
    import fcntl
    started = time.perf_counter()
    if _LOCK is None:
        _LOCK = open(os.path.join(tempfile.gettempdir(), "livehost-bench.lock"), "w")
        try:
            fcntl.flock(_LOCK, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("waiting for another bench script to finish", flush=True)
            fcntl.flock(_LOCK, fcntl.LOCK_EX)
            started = time.perf_counter()
    while (used := busy_cores()) >= max_cores:
        if time.perf_counter() - started > timeout_s:
            print(f"machine still busy ({used:.2f} cores) after {timeout_s:.0f} s; measuring anyway", flush=True)
            return
    print(f"machine quiet enough ({used:.2f} cores busy) after {time.perf_counter() - started:.0f} s", flush=True)


def pause_until_quiet(max_cores: float, timeout_s: float = 90.0) -> float:
    """Wait until the whole machine uses fewer than max_cores over 2 s (at most timeout_s); seconds waited.
    For a bench that is idle while it waits (so all the CPU it sees is other jobs')."""
    started = time.perf_counter()
    while busy_cores(2.0) >= max_cores and time.perf_counter() - started < timeout_s:
        pass
    return time.perf_counter() - started


def rss_mib(pid: int) -> dict:
    """VmRSS (now) and VmHWM (peak) of a process, in MiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            out[line.split(":")[0]] = int(line.split()[1]) / 1024
    return out


def machine() -> str:
    cpu = re.search(r"Model name:\s*(.+)", subprocess.run(["lscpu"], capture_output=True, text=True).stdout)
    mem = int(re.search(r"MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text()).group(1)) / 2**20
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    dirty = subprocess.run(["git", "status", "--porcelain", "--", ".", ":!bench"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    if dirty:  # name the uncommitted product changes by a hash of their diff, so two runs can be told apart
        diff = subprocess.run(["git", "diff", "HEAD", "--", ".", ":!bench"], cwd=ROOT, capture_output=True).stdout
        dirty = f" + uncommitted changes (diff {hashlib.sha1(diff).hexdigest()[:7]}, {len(dirty.splitlines())} files)"
    return (f"{datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}, {cpu.group(1).strip() if cpu else '?'}, "
            f"{os.cpu_count()} cores, {mem:.0f} GiB RAM, commit {git.strip()}{dirty}")


def write_section(name: str, body: str) -> None:
    """Replace the <!-- name:start --> ... <!-- name:end --> section of RESULTS.md (appended if absent)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n\nWritten by `bench/*.py --write`.\n"
    block = f"{start}\n{body.strip()}\n{end}"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    RESULTS.write_text(text)
    print(f"wrote section {name!r} of {RESULTS}")
