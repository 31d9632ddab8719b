"""What a session needs around hearing: a head start for the LLM on a new prompt, and the idle-timeout cue."""
from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("livehost.session")


async def prime_prompt_cache(llm: Any, system: str) -> None:
    """Read a system prompt into the LLM's prompt cache (one token generated and dropped), so that the first
    reply of a fresh session reads only the user's words, as a warm session's does."""
    messages = [{"role": "system", "content": system}, {"role": "user", "content": "Hi"}]
    try:
        async for _ in llm.stream(messages, max_tokens=1, temperature=0.0):
            pass
    except Exception:  # noqa: BLE001 - only a head start: the reply reads the prompt itself
        log.debug("priming the prompt cache failed", exc_info=True)


def idle_cue(timeout_ms: int) -> str:
    """The user's turn the LLM sees when idle_timeout_ms passes in silence: it answers by prompting them."""
    return (f"(I have said nothing for {timeout_ms / 1000:g} seconds. Check, in one short sentence, whether I am "
            f"still there or want to go on.)")
