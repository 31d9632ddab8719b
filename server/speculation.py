"""A reply prepared in the silence that may end the user's turn: started on the speculative transcript and held
(it plans and makes its first audio, nothing is sent), then released when the final transcript is the same words,
or cancelled when it is not, or when the user goes on speaking."""
from __future__ import annotations

import logging
from typing import Any, Callable, Optional

log = logging.getLogger("livehost.session")


class Speculation:
    def __init__(self) -> None:
        self._held: Optional[tuple[str, str, Any]] = None  # (item id, transcript, held reply)

    def guess(self, item_id: str, transcript: str, start: Callable[[str], Any]) -> None:
        """Start a held reply to `transcript` (start(text) -> Reply); an earlier guess is dropped."""
        self.drop()
        self._held = (item_id, transcript, start(transcript))

    def drop(self) -> None:
        if self._held:
            log.debug("the speculative reply to %r is dropped", self._held[1][:40])
            self._held[2].cancel("turn_detected")
            self._held = None

    def take(self, item_id: str, transcript: str, usable: bool = True) -> Optional[Any]:
        """The held reply when the final transcript of `item_id` is what it guessed (and `usable`); else the guess
        is cancelled and None."""
        held, self._held = self._held, None
        if held and usable and held[:2] == (item_id, transcript):
            return held[2]
        if held:
            held[2].cancel("turn_detected")
        return None
