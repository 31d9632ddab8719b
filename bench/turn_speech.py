"""The speech bench/turns.py judges turn-taking on: where a person pauses inside a thought, and where they finish.

Three sources, all 16 kHz float32:
- jfk.flac (real): "And so, my fellow Americans, | ask not what your country can do for you, | ask what you can do
  for your country." Its three long pauses (1.1 s, 1.0 s, 0.5 s, found by the VAD) are inside the thought.
- multilingual.mp3's English half (real): the MIT licence read aloud, one turn with 16 short pauses.
- Sentences spoken by Piper (the bundled voice, three takes at different rates), each cut at a word gap marked "|" with a pause of 0.5-2.0 s put
  in: the words before the cut keep their mid-sentence intonation, since the sentence is spoken whole and cut after.
  Short complete sentences without a pause give finished turns only.
Every sample is followed by 5 s of room tone, so a turn that is never judged complete still ends (max wait).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from common import AUDIO, ENGLISH_END_S

RATE = 16000
TAIL_S = 5.0
PAUSES_S = (0.5, 0.8, 1.2, 2.0)  # cycled over the sentences' pauses
RATES = (0.9, 1.0, 1.1)  # each sentence three times, slower to faster: Piper varies each take a little too
NOISE_DBFS = -62.0  # room tone under the synthetic speech: a microphone is never digitally silent

SENTENCES = [
    "I was wondering | if you could tell me about the return policy.",
    "Can you tell me | what the weather will be like tomorrow?",
    "I really liked the first one, | but it was a bit too expensive for me.",
    "We need eggs, | milk, | and some bread for the weekend.",
    "My name is Anna and | I am calling about my order from last week.",
    "What I would like to know is | whether the shop is open on Sundays.",
    "So the thing is, | my package never arrived | and nobody answered my emails.",
    "Could you recommend | a good book for a long train ride?",
    "The meeting has been moved to | Thursday afternoon at three.",
    "If it rains tomorrow, | we will stay at home and watch a film.",
    "I think that the best way to learn a language | is to speak it every day.",
    "Tell me a story about | a dragon who is afraid of the dark.",
    "How long does it take | to get from the station to the museum?",
    "I have been trying to | reset my password for an hour.",
    "When you get a moment, | could you send me the slides from today?",
    "The reason I am asking is that | my sister wants to visit in June.",
    "Yes, that sounds great.",
    "Thank you very much for your help.",
    "What time is it?",
    "No.",
    "Could you say that again?",
    "I would like a large coffee with milk, please.",
    "Where is the nearest pharmacy?",
    "That is all for today.",
]


@dataclass
class Sample:
    name: str
    audio: np.ndarray  # 16 kHz float32
    pauses: list[tuple[float, float]] = field(default_factory=list)  # (start_s, end_s): inside the thought
    end_s: float = 0.0  # where the finished turn's speech ends


def _room_tone(n: int, rng: np.random.Generator) -> np.ndarray:
    return (rng.standard_normal(n) * 10 ** (NOISE_DBFS / 20)).astype(np.float32)


def _speech_end(x: np.ndarray, floor_db: float = 35.0) -> float:
    """Seconds to just after the last 10 ms window within floor_db of the loudest one."""
    win = RATE // 100
    rms = np.sqrt(np.mean(x[: len(x) // win * win].reshape(-1, win) ** 2, axis=1)) + 1e-6
    db = 20 * np.log10(rms)
    return (int(np.nonzero(db >= db.max() - floor_db)[0][-1]) + 1) * win / RATE


def _quietest(x: np.ndarray, seconds: float = 0.25) -> np.ndarray:
    n = int(seconds * RATE)
    energy = [float(np.mean(x[i:i + n] ** 2)) for i in range(0, len(x) - n, n // 4)]
    i = int(np.argmin(energy)) * (n // 4)
    return x[i:i + n]


def recorded(name: str, x: np.ndarray, min_pause_s: float) -> Sample:
    """Real speech read as one turn: its VAD pauses of >= min_pause_s are inside the thought; it ends where the
    last voiced run of >= 0.5 s ends (jfk's last 0.1 s is the crowd starting up: two voiced frames)."""
    from livehost.speech.vad import SileroVAD

    stream, voiced, state = SileroVAD().stream(), [], False
    for i in range(0, len(x) // 512 * 512, 512):
        p = stream.probability(x[i:i + 512])
        state = p >= 0.5 or (state and p >= 0.35)
        voiced.append(state)
    runs, start = [], None  # voiced runs in frames
    for i, v in enumerate(voiced + [False]):
        if v and start is None:
            start = i
        elif not v and start is not None:
            runs.append((start, i))
            start = None
    while runs[-1][1] - runs[-1][0] < 16:
        runs.pop()
    pauses = [(b * 0.032, c * 0.032) for (_, b), (c, _) in zip(runs, runs[1:]) if (c - b) * 0.032 >= min_pause_s]
    end = runs[-1][0] * 0.032 + _speech_end(x[runs[-1][0] * 512: runs[-1][1] * 512])
    tail = np.resize(_quietest(x), int(TAIL_S * RATE))  # the recording's own room tone, looped
    return Sample(name, np.concatenate([x[: runs[-1][1] * 512], tail]), pauses, end)


def jfk() -> Sample:
    import soundfile as sf
    import soxr

    a, sr = sf.read(AUDIO / "jfk.flac", dtype="float32", always_2d=True)
    x = soxr.resample(a.mean(axis=1), sr, RATE).astype(np.float32)
    return recorded("jfk", x, 0.4)


def mit() -> Sample:
    """The English half of multilingual.mp3: the MIT licence read aloud, as one 29 s turn (a list of rights read
    with short pauses whose intonation often falls, as at the end of a sentence)."""
    import av

    out = []
    with av.open(str(AUDIO / "multilingual.mp3")) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=RATE)
        for frame in container.decode(audio=0):
            out += [f.to_ndarray()[0] for f in resampler.resample(frame)]
    x = np.concatenate(out)[: int(ENGLISH_END_S * RATE)].astype(np.float32)
    return recorded("mit", x, 0.128)


def piper_samples() -> list[Sample]:
    import soxr

    from livehost.speech.tts import PiperTTS

    from livehost.speech.tts import Prosody

    tts, rng, out, k = PiperTTS(), np.random.default_rng(7), [], 0
    for i, (text, rate) in enumerate((t, r) for r in RATES for t in SENTENCES):
        parts = [p.strip() for p in text.split("|")]
        chunks = list(tts.synthesize(" ".join(parts), Prosody(rate=rate)))
        assert len(chunks) == 1, text
        c = chunks[0]
        x = soxr.resample(c.audio.astype(np.float32) / 32768, c.sample_rate, RATE).astype(np.float32)
        gaps = [(s, d) for p, s, d in c.phonemes if p == " "]  # one per word gap, in order
        cuts = []
        for j in range(1, len(parts)):
            # espeak joins some words ("has been"): count the word gaps in the prefix's own phonemes
            prefix = "".join(p for sent in tts._voice.phonemize(" ".join(parts[:j])) for p in sent)
            s, d = gaps[prefix.rstrip().count(" ")]
            cuts.append(int((s + d / 2) * RATE))
        pieces, pauses, t = [], [], 0.0
        bounds = [0, *cuts, len(x)]
        for j, (a, b) in enumerate(zip(bounds, bounds[1:])):
            seg = x[a:b].copy()
            fade = int(0.01 * RATE)  # no click at a cut
            if j:
                seg[:fade] *= np.linspace(0, 1, fade, dtype=np.float32)
            if b != len(x):
                seg[-fade:] *= np.linspace(1, 0, fade, dtype=np.float32)
            if j:
                pause = PAUSES_S[k % len(PAUSES_S)]
                k += 1
                pauses.append((t, t + pause))
                pieces.append(np.zeros(int(pause * RATE), np.float32))
                t += pause
            pieces.append(seg)
            t += len(seg) / RATE
        speech = np.concatenate(pieces)
        end = _speech_end(speech)
        audio = np.concatenate([speech[: int((end + 0.02) * RATE)], np.zeros(int(TAIL_S * RATE), np.float32)])
        audio += _room_tone(len(audio), rng)
        out.append(Sample(f"piper{i:02d}", audio, pauses, end))
    return out


def all_samples() -> list[Sample]:
    return [jfk(), mit(), *piper_samples()]
