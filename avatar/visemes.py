"""Visemes: mouth shapes over time, from the TTS engine's phoneme timings (or, failing that, from the audio).

Viseme set (the Oculus/ARKit-style 15, the names most Live2D/VRM rigs and viseme tools use):

    sil  rest, mouth closed        PP  m b p (lips pressed)       FF  f v (lip under teeth)
    TH   θ ð (tongue at teeth)     DD  t d l (tongue up)          kk  k g ŋ-ish (back)
    CH   tʃ dʒ ʃ ʒ (lips forward)  SS  s z (teeth close)          nn  n ŋ (like DD, a little softer)
    RR   ɹ r ɚ (rounded)           aa  a ɑ æ ʌ ə (open jaw)       E   ɛ e ɪ (mid, spread)
    I    i j (wide, narrow)        O   o ɔ ɒ (rounded open)       U   u ʊ w y (tight round)

The IPA -> viseme table is openfacefx's IPA preset (MIT), which covers espeak's English IPA and most of its
Chinese (pinyin-IPA) inventory; a few symbols it lacks are added below. Piper gives one timing per IPA
*character*, so marks are folded into their phoneme: stress (ˈ ˌ) into the next, length (ː), tone letters
and combining marks into the previous; "t"+"ʃ" and "d"+"ʒ" become one CH; "h"/"ʔ" borrow the next vowel's
shape. '^', '$', ' ' and punctuation are silence; pauses shorter than 100 ms inside a sentence are absorbed
so the mouth does not flap shut between words. Unknown letters map to DD (a neutral half-open shape),
unknown punctuation to sil.

Smoothing (coarticulation) is done here rather than with openfacefx's dominance model, because `at(t)` must
be cheap at any t (a video frame) and predictable: neighbouring shapes cross-fade linearly over `RAMP_MS`
(50 ms) centred on their boundary, shortened to half a phoneme when the phoneme is shorter. Lip closures
(PP) are held at least `MIN_CLOSURE_MS` (60 ms) and their ramps lie outside them, so every 25 fps frame
inside a closure shows the closed mouth.

Extension event for browser-side renderers (Live2D/VRM/sprites), sent next to the reply's audio:

    {"type": "livehost.visemes",
     "audio_start_ms": 1234.0,   # where this track starts on the reply's audio timeline (ms from its first sample)
     "duration_ms": 1416.4,      # length of the audio it covers
     "ramp_ms": 50,              # cross-fade length used by livehost's own renderer (optional to honour)
     "visemes": [["sil", 1234.0, 1280.0, 1.0], ["kk", 1280.0, 1303.2, 0.6], ...]}

Each entry is [name, start_ms, end_ms, weight] on that same reply-audio timeline (so a client plays a viseme
when its audio player has played `start_ms` of the reply); weight (0..1) is how fully the shape is formed
(unstressed vowels less). Entries are contiguous and ordered. Extra keys given to `to_event` (for example
`response_id`, `item_id`) are passed through.
"""
from __future__ import annotations

import bisect
import unicodedata
from dataclasses import dataclass, field

import numpy as np
from openfacefx.ipa import IPA_MAPPING

VISEMES = ("sil", "PP", "FF", "TH", "DD", "kk", "CH", "SS", "nn", "RR", "aa", "E", "I", "O", "U")
VOWELS = frozenset({"aa", "E", "I", "O", "U"})
# Jaw/lip opening of each shape at full weight; mouth_open() is the weighted sum.
OPENNESS = {"sil": 0.0, "PP": 0.0, "FF": 0.12, "TH": 0.22, "DD": 0.28, "kk": 0.32, "CH": 0.25, "SS": 0.12,
            "nn": 0.22, "RR": 0.3, "aa": 1.0, "E": 0.62, "I": 0.42, "O": 0.8, "U": 0.38}
RAMP_MS = 50.0
MIN_CLOSURE_MS = 60.0
MIN_PAUSE_MS = 100.0

_EXTRA = {"ʂ": "CH", "ʐ": "CH", "ʈʂ": "CH", "ᵻ": "E", "ɬ": "DD", "ɮ": "DD", "ɹ̩": "RR"}
_STRESS = frozenset("ˈˌ'")
_COPY_NEXT = frozenset({"h", "ɦ", "ʔ"})
_REDUCED = frozenset({"ə", "ɐ", "ᵻ", "ɪ", "ʊ", "ɨ"})
_AFFRICATES = {("t", "ʃ"), ("d", "ʒ"), ("t", "ɕ"), ("d", "ʑ"), ("ʈ", "ʂ")}


def phoneme_to_viseme(symbol: str) -> str | None:
    """Viseme of one IPA symbol; None for marks that belong to a neighbouring phoneme."""
    if not symbol or symbol in "^$_" or symbol.isspace():
        return "sil"
    if symbol in _EXTRA:
        return _EXTRA[symbol]
    key = IPA_MAPPING.normalize(symbol)
    row = IPA_MAPPING.rows.get(key) if key else None
    if row:
        return max(row, key=row.get)
    if key in _EXTRA:
        return _EXTRA[key]
    if len(key) > 1:  # an unknown cluster: go by its first known vowel, else its first known symbol
        found = [phoneme_to_viseme(ch) for ch in key]
        found = [v for v in found if v and v != "sil"]
        if found:
            return next((v for v in found if v in VOWELS), found[0])
    cat = unicodedata.category(symbol[0])
    if cat.startswith("P") or cat.startswith("Z"):
        return "sil"
    if cat.startswith("L") and cat != "Lm":
        return "DD"
    return None  # stress/length/tone marks, digits, combining marks


@dataclass
class Viseme:
    name: str
    start_ms: float
    end_ms: float
    weight: float = 1.0

    @property
    def duration_ms(self) -> float:
        return self.end_ms - self.start_ms


@dataclass
class VisemeTrack:
    """Contiguous visemes on one timeline (ms). Before and after the track the mouth rests (sil)."""
    visemes: list[Viseme]
    duration_ms: float
    start_ms: float = 0.0
    ramp_ms: float = RAMP_MS
    _segs: list[Viseme] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        segs: list[Viseme] = []
        pos = self.start_ms
        for v in sorted(self.visemes, key=lambda v: v.start_ms):
            if v.start_ms > pos + 1e-6:  # fill gaps with rest
                segs.append(Viseme("sil", pos, v.start_ms))
            if v.end_ms > max(v.start_ms, pos):
                segs.append(Viseme(v.name, max(v.start_ms, pos), v.end_ms, v.weight))
                pos = v.end_ms
        self._segs = segs
        self._starts = [s.start_ms for s in segs]
        # Ramp extents (left, right) around the boundary after each segment.
        self._ramps = [self._ramp(segs[i], segs[i + 1] if i + 1 < len(segs) else None) for i in range(len(segs))]
        self._first_in = self._ramp(None, segs[0])[1] if segs else 0.0

    def _ramp(self, a: Viseme | None, b: Viseme | None) -> tuple[float, float]:
        da = a.duration_ms if a else float("inf")
        db = b.duration_ms if b else float("inf")
        if a is not None and a.name == "PP" and (b is None or b.name != "PP"):
            return 0.0, min(self.ramp_ms, db / 2)  # open after the closure, not during it
        if b is not None and b.name == "PP" and (a is None or a.name != "PP"):
            return min(self.ramp_ms, da / 2), 0.0
        h = min(self.ramp_ms / 2, da / 2, db / 2)
        return h, h

    @property
    def end_ms(self) -> float:
        return self.start_ms + self.duration_ms

    # ---- building -------------------------------------------------------------------------------------------
    @classmethod
    def from_phonemes(cls, phonemes, offset_ms: float = 0.0, duration_ms: float | None = None,
                      audio: np.ndarray | None = None, sample_rate: int | None = None) -> "VisemeTrack":
        """From (phoneme, start_s, duration_s) as in SpeechChunk.phonemes; times become offset_ms + start.

        With the chunk's audio, each vowel opens as wide as it is loud (relative to the chunk's loudest vowels),
        so quiet trailing schwas stay small and stressed vowels open fully.
        """
        items = [(str(p), offset_ms + float(s) * 1000, offset_ms + (float(s) + float(d)) * 1000)
                 for p, s, d in phonemes]
        end = offset_ms + duration_ms if duration_ms is not None else (items[-1][2] if items else offset_ms)
        segs: list[list] = []  # [viseme, start, end, weight, symbol, stressed]
        stress_from: float | None = None
        for i, (sym, s, e) in enumerate(items):
            if sym in _STRESS:
                stress_from = s if stress_from is None else stress_from
                continue
            vis = phoneme_to_viseme(sym)
            if vis is None:  # a mark: lengthen the phoneme before it
                if segs:
                    segs[-1][2] = e
                continue
            if sym in _COPY_NEXT:
                nxt = next((phoneme_to_viseme(x[0]) for x in items[i + 1:]
                            if x[0] not in _STRESS and phoneme_to_viseme(x[0])), "sil")
                vis = nxt if nxt in VOWELS else "kk"
            start = stress_from if stress_from is not None else s
            stressed = stress_from is not None
            stress_from = None
            if segs and (segs[-1][4], sym) in _AFFRICATES:
                segs[-1][0], segs[-1][2], segs[-1][4] = vis, e, sym
                continue
            segs.append([vis, start, e, _weight(sym, vis, stressed), sym, stressed])
        if stress_from is not None and segs:
            segs[-1][2] = max(segs[-1][2], items[-1][2])
        if audio is not None and sample_rate:
            _loudness_weights(segs, np.asarray(audio, np.float32).reshape(-1), sample_rate, offset_ms)
        return cls(_tidy([Viseme(v, s, e, w) for v, s, e, w, _, _ in segs]), end - offset_ms, offset_ms)

    @classmethod
    def from_chunk(cls, chunk, offset_ms: float = 0.0) -> "VisemeTrack":
        """From a SpeechChunk: its phoneme timings (shaped by its loudness) when it has them, else its audio."""
        if chunk.phonemes:
            return cls.from_phonemes(chunk.phonemes, offset_ms, len(chunk.audio) * 1000.0 / chunk.sample_rate,
                                     chunk.audio, chunk.sample_rate)
        return cls.from_audio(chunk.audio, chunk.sample_rate, offset_ms)

    @classmethod
    def from_audio(cls, pcm: np.ndarray, sample_rate: int, offset_ms: float = 0.0,
                   frame_ms: float = 20.0) -> "VisemeTrack":
        """For engines without alignments: loudness -> jaw opening -> sil / O (half open) / aa (open)."""
        x = np.asarray(pcm, dtype=np.float32).reshape(-1)
        hop = max(1, int(round(sample_rate * frame_ms / 1000)))
        n = len(x) // hop
        duration = len(x) * 1000.0 / sample_rate
        if n == 0:
            return cls([], duration, offset_ms)
        rms = np.sqrt(np.mean(x[: n * hop].reshape(n, hop) ** 2, axis=1))
        ref = max(float(np.percentile(rms, 95)), 1000.0)  # ~-30 dBFS: a quiet clip is not stretched to "loud"
        gate = max(0.12 * ref, 100.0)  # ~-50 dBFS and 18 dB under the talker: background noise stays shut
        level = np.clip((rms - gate) / (ref - gate), 0.0, 1.0) ** 0.7
        # Fast attack, slower release: mouths open on an onset and relax shut.
        a_att, a_rel = np.exp(-frame_ms / 15.0), np.exp(-frame_ms / 60.0)
        env = np.empty_like(level)
        prev = 0.0
        for i, v in enumerate(level):
            c = a_att if v > prev else a_rel
            prev = c * prev + (1 - c) * v
            env[i] = prev
        names = np.where(env < 0.15, "sil", np.where(env < 0.55, "O", "aa"))
        visemes: list[Viseme] = []
        i = 0
        while i < n:
            j = i
            while j + 1 < n and names[j + 1] == names[i]:
                j += 1
            name = str(names[i])
            w = 1.0 if name == "sil" else float(min(1.0, max(0.3, env[i:j + 1].mean() / OPENNESS[name])))
            visemes.append(Viseme(name, offset_ms + i * frame_ms, offset_ms + (j + 1) * frame_ms, w))
            i = j + 1
        visemes[-1].end_ms = offset_ms + duration
        return cls(_tidy(visemes, min_pause_ms=0.0), duration, offset_ms)

    def shifted(self, offset_ms: float) -> "VisemeTrack":
        """The same track moved later by offset_ms (e.g. onto the reply's audio timeline)."""
        return VisemeTrack([Viseme(v.name, v.start_ms + offset_ms, v.end_ms + offset_ms, v.weight)
                            for v in self.visemes], self.duration_ms, self.start_ms + offset_ms, self.ramp_ms)

    # ---- sampling -------------------------------------------------------------------------------------------
    def at(self, t_ms: float) -> dict[str, float]:
        """Weights of the visemes showing at t_ms (they sum to 1; "sil" takes what the others leave)."""
        segs = self._segs
        if not segs:
            return {"sil": 1.0}
        k = bisect.bisect_right(self._starts, t_ms) - 1
        if k < 0:  # before the track: only the ramp into its first shape
            a, b, b0 = None, segs[0], segs[0].start_ms
            left, right = self._ramp(None, segs[0])
        else:
            cur = segs[k]
            left_prev = self._ramps[k - 1][1] if k > 0 else self._first_in
            if t_ms < cur.start_ms + left_prev:
                a, b, b0 = (segs[k - 1] if k > 0 else None), cur, cur.start_ms
                left, right = self._ramps[k - 1] if k > 0 else self._ramp(None, cur)
            else:
                left, right = self._ramps[k]
                if t_ms <= cur.end_ms - left:
                    return _weights([(cur, 1.0)])
                a, b, b0 = cur, (segs[k + 1] if k + 1 < len(segs) else None), cur.end_ms
        span = left + right
        f = 1.0 if span <= 0 else min(1.0, max(0.0, (t_ms - (b0 - left)) / span))
        return _weights([(a, 1.0 - f), (b, f)])

    def mouth_open(self, t_ms: float) -> float:
        """How open the mouth is at t_ms, 0 (closed) .. 1 (wide open)."""
        return float(min(1.0, sum(OPENNESS.get(n, 0.3) * w for n, w in self.at(t_ms).items())))

    def dominant(self, t_ms: float) -> str:
        """The one shape to show at t_ms (a sprite renderer's choice): see `dominant`."""
        return dominant(self.at(t_ms))


def dominant(weights: dict[str, float], least: float = 0.35) -> str:
    """The strongest shape other than rest, if it is at least `least` formed, else "sil". (Rest also holds
    what a lightly formed vowel leaves, so a plain argmax would shut the mouth on unstressed vowels.)"""
    name, w = max(((n, w) for n, w in weights.items() if n != "sil"), key=lambda x: x[1], default=("sil", 0.0))
    return name if w >= least else "sil"


def _weight(sym: str, vis: str, stressed: bool) -> float:
    if vis not in VOWELS:
        return 1.0
    if stressed:
        return 1.0
    return 0.6 if IPA_MAPPING.normalize(sym) in _REDUCED else 0.8


def _loudness_weights(segs: list[list], audio: np.ndarray, sr: int, offset_ms: float) -> None:
    rms = []
    for seg in segs:
        a = audio[max(0, int((seg[1] - offset_ms) * sr / 1000)):int((seg[2] - offset_ms) * sr / 1000)]
        rms.append(float(np.sqrt(np.mean(a * a))) if len(a) else 0.0)
    loud = [r for seg, r in zip(segs, rms) if seg[0] in VOWELS]
    if not loud:
        return
    ref = max(float(np.percentile(loud, 90)), 300.0)
    for seg, r in zip(segs, rms):
        if seg[0] in VOWELS:
            seg[3] = float(np.clip(seg[3] * (0.3 + 0.8 * (r / ref) ** 0.8), 0.4, 1.0))  # >= 0.4: every vowel shows


def _weights(parts) -> dict[str, float]:
    out: dict[str, float] = {}
    for seg, f in parts:
        if seg is None or f <= 0:
            continue
        out[seg.name] = out.get(seg.name, 0.0) + f * seg.weight
    rest = 1.0 - sum(out.values())
    if rest > 1e-9:
        out["sil"] = out.get("sil", 0.0) + rest
    return out


def _tidy(visemes: list[Viseme], min_pause_ms: float = MIN_PAUSE_MS) -> list[Viseme]:
    """Merge repeats, absorb short pauses inside the track, hold closures long enough to be seen."""
    out: list[Viseme] = []
    for v in visemes:
        if out and out[-1].name == v.name:
            out[-1].end_ms, out[-1].weight = v.end_ms, max(out[-1].weight, v.weight)
        else:
            out.append(Viseme(v.name, v.start_ms, v.end_ms, v.weight))
    i = 1
    while i < len(out) - 1:
        v = out[i]
        if v.name == "sil" and v.duration_ms < min_pause_ms:
            mid = (v.start_ms + v.end_ms) / 2
            out[i - 1].end_ms, out[i + 1].start_ms = mid, mid
            del out[i]
            if out[i - 1].name == out[i].name:
                out[i - 1].end_ms = out[i].end_ms
                del out[i]
            continue
        i += 1
    for i, v in enumerate(out):
        short = MIN_CLOSURE_MS - v.duration_ms
        if v.name != "PP" or short <= 0:
            continue
        # Widen into the neighbours, taking at most half of each.
        take_l = min(short / 2, out[i - 1].duration_ms / 2) if i > 0 else 0.0
        take_r = min(short - take_l, out[i + 1].duration_ms / 2) if i + 1 < len(out) else 0.0
        if i > 0:
            out[i - 1].end_ms -= take_l
        if i + 1 < len(out):
            out[i + 1].start_ms += take_r
        v.start_ms -= take_l
        v.end_ms += take_r
    return [v for v in out if v.duration_ms > 0]


def to_event(track: VisemeTrack, **extra) -> dict:
    """The `livehost.visemes` extension event for this track (see the module docstring)."""
    return {"type": "livehost.visemes", **extra,
            "audio_start_ms": round(track.start_ms, 1), "duration_ms": round(track.duration_ms, 1),
            "ramp_ms": track.ramp_ms,
            "visemes": [[v.name, round(v.start_ms, 1), round(v.end_ms, 1), round(v.weight, 2)]
                        for v in track.visemes]}
