"""The Mandarin voice's phonemes: tone-numbered pinyin syllables -> the model's symbols (initial + final with tone,
"#0" between syllables, "sil" at the ends), and those symbols with FastSpeech2's predicted lengths -> phoneme timings
as IPA (a final as its vowels and coda, sharing its time), which avatar/visemes.py turns into mouth shapes."""
from __future__ import annotations

import logging

import numpy as np

from livehost.speech import zh_text

log = logging.getLogger("livehost.models")
HOP, SAMPLE_RATE = 300, 24000  # samples per mel frame, and the voice's rate (the Baker FastSpeech2 / MB-MelGAN)


# Pinyin initials and finals as IPA, for the mouth. A final is its vowels then its coda.
_INITIAL_IPA = {"b": "p", "p": "p", "m": "m", "f": "f", "d": "t", "t": "t", "n": "n", "l": "l", "g": "k",
                "k": "k", "h": "x", "j": "tɕ", "q": "tɕ", "x": "ɕ", "zh": "ʈʂ", "ch": "ʈʂ", "sh": "ʂ", "r": "ʐ",
                "z": "s", "c": "s", "s": "s", "^": ""}
_FINAL_IPA = {
    "a": "a", "ai": "a i", "an": "a n", "ang": "a ŋ", "ao": "a u", "e": "ə", "ei": "e i", "en": "ə n",
    "eng": "ə ŋ", "er": "ɚ", "i": "i", "ii": "ɨ", "iii": "ɨ", "ia": "i a", "ian": "i ɛ n", "iang": "i a ŋ",
    "iao": "i a u", "ie": "i ɛ", "in": "i n", "ing": "i ŋ", "iong": "i ʊ ŋ", "iou": "i o u", "o": "o",
    "ong": "ʊ ŋ", "ou": "o u", "u": "u", "ua": "u a", "uai": "u a i", "uan": "u a n", "uang": "u a ŋ",
    "uei": "u e i", "uen": "u ə n", "ueng": "u ə ŋ", "uo": "u o", "v": "y", "van": "y ɛ n", "ve": "y ɛ",
    "vn": "y n",
}
_GLIDE, _CODA = 0.5, 0.6  # a medial (i u y before the vowel) and a coda take this share of a vowel's time


def final_ipa(final: str) -> list[tuple[str, float]]:
    """A final (without tone) -> [(IPA symbol, share of the final's time)]; shares sum to 1."""
    parts = _FINAL_IPA[final].split()
    weights = [1.0] * len(parts)
    if len(parts) > 1 and parts[0] in ("i", "u", "y") and parts[1] not in ("n", "ŋ"):
        weights[0] = _GLIDE
    if len(parts) > 1 and parts[-1] in ("i", "u", "n", "ŋ") and weights[-1] == 1.0:
        weights[-1] = _CODA
    total = sum(weights)
    return [(p, w / total) for p, w in zip(parts, weights)]


class Phonemizer:
    """Phrases of syllables -> the model's symbol ids, and which syllable each symbol belongs to."""

    def __init__(self, mapper: dict):
        self.symbol_to_id: dict[str, int] = mapper["symbol_to_id"]
        self.pinyin: dict[str, list[str]] = mapper["pinyin_dict"]
        self.eos = self.symbol_to_id["eos"]

    def split(self, pinyin: str) -> list[tuple[str, str]]:
        """A tone-numbered syllable -> [(initial, final+tone)]; erhua ("dianr3") gives a second "er5"."""
        base, tone = pinyin[:-1], pinyin[-1]
        if base in ("n", "ng", "m"):
            base = "en"  # 嗯
        if base in self.pinyin:
            return [tuple(self.pinyin[base][:1]) + (self.pinyin[base][1] + tone,)]
        if base.endswith("r") and base[:-1] in self.pinyin:
            return self.split(base[:-1] + tone) + [("^", "er5")]
        return []

    def symbols(self, phrase: list[zh_text.Syllable]) -> list[str]:
        out = ["sil"]
        for syl in phrase:
            parts = [pair for pair in self.split(syl.pinyin) if all(x in self.symbol_to_id for x in pair)]
            if not parts:
                log.debug("no phonemes for %r (%s): skipped", syl.text, syl.pinyin)
                continue
            if len(out) > 1:
                out.append("#0")
            for initial, final in parts:
                out += [initial, final]
        return out + ["sil"] if len(out) > 1 else []

    def ids(self, symbols: list[str]) -> list[int]:
        return [self.symbol_to_id[s] for s in symbols] + [self.eos]


def phoneme_timings(symbols: list[str], frames: np.ndarray, audio: np.ndarray | None = None
             ) -> list[tuple[str, float, float]]:
    """Symbols and their predicted lengths (mel frames) -> (IPA phoneme, start_s, duration_s).

    The model gives the "#0" between two syllables several frames, but they are voiced: the vowel before it goes
    on (measured: as loud as the vowel), so the mouth holds that final through them. The last vowel also rings on
    into the closing "sil" (the mouth shut 60 ms before the voice did, measured with bench/tts_zh.py): with the
    audio, a final takes the sil's frames that are still loud, and a phrase's first consonant gives its quiet
    frames to the sil before it.
    """
    lengths = [int(n) for n in frames]
    for i, sym in enumerate(symbols):
        if sym == "#0" and i and symbols[i - 1] not in _INITIAL_IPA:
            lengths[i - 1] += lengths[i]
            lengths[i] = 0
    if audio is not None and len(audio) >= HOP:
        rms = np.sqrt(np.mean(audio[:len(audio) // HOP * HOP].reshape(-1, HOP) ** 2, axis=1))
        loud = 0.1 * float(np.percentile(rms, 90))  # 20 dB under the phrase's loud frames
        at = np.cumsum([0] + lengths)
        for i, sym in enumerate(symbols):
            if sym == "sil" and i and symbols[i - 1] not in _INITIAL_IPA:
                k = 0
                while k < lengths[i] and at[i] + k < len(rms) and rms[at[i] + k] > loud:
                    k += 1
                lengths[i - 1] += k
                lengths[i] -= k
            elif sym in _INITIAL_IPA and i and symbols[i - 1] == "sil":
                k = 0  # and the first consonant starts when it is heard: the model's onsets begin quiet
                while k < lengths[i] - 1 and at[i] + k < len(rms) and rms[at[i] + k] <= loud:
                    k += 1
                lengths[i - 1] += k
                lengths[i] -= k
    out, t = [], 0.0
    for sym, n in zip(symbols, lengths):
        d = float(n) * HOP / SAMPLE_RATE
        if d <= 0:
            continue
        if sym in ("sil", "#0", "#1", "#2", "#3"):
            out.append((" ", t, d))
        elif sym in _INITIAL_IPA:
            if _INITIAL_IPA[sym]:
                out.append((_INITIAL_IPA[sym], t, d))
            else:  # zero initial: its (short) time goes to the vowel after it
                out.append(("ʔ", t, d))
        else:
            s = t
            for ipa, share in final_ipa(sym[:-1]):
                out.append((ipa, s, d * share))
                s += d * share
        t += d
    return out
