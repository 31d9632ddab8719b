"""Character cards: who the host is, how it speaks, what it knows, and the system prompt that follows from it.

One YAML file per character; the file stem is its id. A bad card fails with the file, line and field named:
    shop_helper.yaml:7: voice.rate: Input should be greater than 0
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Literal, Optional, Sequence

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from livehost.persona.emotion import Emotion

log = logging.getLogger("livehost.persona")

BUILTIN_DIR = Path(__file__).resolve().parent / "characters"
Mode = Literal["chat", "livestream", "customer_service"]
_LANGUAGE_NAMES = {"en": "English", "zh": "Chinese", "ja": "Japanese", "ko": "Korean", "es": "Spanish",
                   "fr": "French", "de": "German", "pt": "Portuguese", "it": "Italian", "ru": "Russian"}


class CharacterError(ValueError):
    """A card that cannot be used. `problems` holds (line, field path, message) for each mistake."""

    def __init__(self, file: str, problems: list[tuple[int, str, str]]):
        self.file, self.problems = file, problems
        super().__init__("\n".join(f"{file}:{line}: {where + ': ' if where else ''}{msg}"
                                   for line, where, msg in problems))


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a typo in a key is an error, not a silent default


class Voice(_Part):
    engine: str = "piper"
    voice: Optional[str] = Field(None, description="voice model path (relative to the card); null: the default voice")
    rate: float = Field(1.0, gt=0, le=4)
    pitch: float = Field(1.0, gt=0, le=4)
    energy: float = Field(1.0, gt=0, le=4)


class Avatar(_Part):
    kind: Literal["builtin", "sprites"] = "builtin"
    asset: str = Field(min_length=1, description="builtin avatar name, or sprite folder (relative to the card)")
    expressions: dict[Emotion, str] = Field(default_factory=dict, description="emotion -> expression name")


class Memory(_Part):
    enabled: bool = True
    remember_facts: bool = True
    max_memories_in_prompt: int = Field(5, ge=0, le=50)


class Knowledge(_Part):
    sources: list[str] = Field(default_factory=list, description="files or folders, relative to the card")
    answer_only_from_knowledge: bool = False
    handoff_message: str = "I'm not sure about that. Would you like me to connect you with a person?"


class Livestream(_Part):
    idle_topics: list[str] = Field(default_factory=list)
    idle_after_s: float = Field(20.0, gt=0)
    greet_regulars: bool = True


class CustomerService(_Part):
    company: str = Field(min_length=1)
    handoff_on: list[str] = Field(default_factory=lambda: ["human", "real person", "agent", "manager"])


class CardToolHttp(_Part):
    url: str = Field(pattern=r"^https?://", description="called as written; {argument} placeholders are filled")
    method: Literal["GET", "POST"] = "GET"
    timeout_s: float = Field(5.0, gt=0, le=60)
    headers: dict[str, str] = Field(default_factory=dict, description="header name -> environment variable")


class CardTool(_Part):
    """A tool the server calls itself (persona/tools.py): a shop's order lookup, with no client code."""
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str = ""
    parameters: dict = Field(default_factory=lambda: {"type": "object", "properties": {}})
    http: CardToolHttp


class Character(_Part):
    id: str
    name: str = Field(min_length=1)
    persona: str = Field(min_length=1, description="who they are")
    style: str = Field(min_length=1, description="how they speak")
    greeting: str = Field(min_length=1)
    languages: list[str] = Field(default_factory=lambda: ["en"], min_length=1)
    voice: Voice = Field(default_factory=Voice)
    avatar: Avatar = Field(default_factory=lambda: Avatar(asset="default"))
    emotions: list[Emotion] = Field(default_factory=lambda: ["neutral", "happy", "sad", "surprised"], min_length=1)
    memory: Memory = Field(default_factory=Memory)
    knowledge: Knowledge = Field(default_factory=Knowledge)
    refuse_topics: list[str] = Field(default_factory=list)
    mode: Mode = "chat"
    livestream: Livestream = Field(default_factory=Livestream)
    customer_service: Optional[CustomerService] = None
    tools: list[CardTool] = Field(default_factory=list)
    _source: Optional[Path] = PrivateAttr(None)

    def function_tools(self) -> list:
        """The card's tools as persona.tools.Tool (each checked when the card loads)."""
        from livehost.persona.tools import HttpSpec, parse_tool

        return [parse_tool(t.model_dump(exclude={"http"}), f"tools[{i}]",
                           HttpSpec(t.http.url, t.http.method, t.http.timeout_s, dict(t.http.headers)))
                for i, t in enumerate(self.tools)]

    @property
    def source(self) -> Optional[Path]:
        """The card file it was loaded from (None when built in code)."""
        return self._source

    def resolve(self, rel: str) -> Path:
        """A path from the card, relative to the card's folder."""
        p = Path(rel).expanduser()
        return p if p.is_absolute() or self._source is None else self._source.parent / p

    def knowledge_paths(self) -> list[Path]:
        return [self.resolve(s) for s in self.knowledge.sources]

    def voice_path(self) -> Optional[Path]:
        return self.resolve(self.voice.voice) if self.voice.voice else None

    def wants_handoff(self, user_text: str) -> bool:
        """Customer service: the user asked for a person (one of customer_service.handoff_on, any case)."""
        cs = self.customer_service
        text = user_text.lower()
        return self.mode == "customer_service" and cs is not None and any(p.lower() in text for p in cs.handoff_on)

    def system_prompt(self, memories: Sequence[str] = (), knowledge: Sequence[tuple[str, str]] = (),
                      user_name: Optional[str] = None) -> str:
        """Short and concrete on purpose: the default LLM has 135M parameters and follows few instructions."""
        context = self.context_prompt(memories, knowledge)
        return self.persona_prompt(user_name) + ("\n" + context if context else "")

    @property
    def asks_for_tags(self) -> bool:
        """Whether the prompt asks the LLM for emotion tags. Not for a character who speaks only Chinese, Japanese or
        Korean: the model that speaks them (Qwen2.5-0.5B, ~22 ms a token on 2 cores) spent 4 tokens on "[neutral] "
        before each reply's first word; her emotion comes from the user's and her own words (Dialogue.tagger)."""
        return not all(code in ("zh", "ja", "ko") for code in self.languages)

    def persona_prompt(self, user_name: Optional[str] = None) -> str:
        """The part that never changes within a conversation (so the LLM's prompt cache keeps it)."""
        lines = [f"You are {self.name}. {_flat(self.persona)}"]
        cs = self.customer_service
        if self.mode == "customer_service" and cs and cs.company.lower() not in self.persona.lower():
            lines.append(f"You help customers of {cs.company}.")
        elif self.mode == "livestream":
            lines.append("You are hosting a live stream and chatting with viewers.")
        lines.append(f"Style: {_flat(self.style)}")
        lines.append("You speak out loud: one to three short sentences, no lists, no markdown, no emoji.")
        if len(self.languages) > 1:
            names = " or ".join(_LANGUAGE_NAMES.get(code, code) for code in self.languages)
            lines.append(f"Reply in the user's language ({names}).")
        elif self.languages[0] != "en":
            lines.append(f"Reply in {_LANGUAGE_NAMES.get(self.languages[0], self.languages[0])}.")
        if self.asks_for_tags:
            tags = ", ".join(f"[{e}]" for e in self.emotions)
            # With an example: told only "begin with a tag", the small models often write the tag alone and stop.
            lines.append(f"Write each sentence after an emotion tag ({tags}), for example: [happy] Nice to see you!")
        else:  # in Chinese, to the model that speaks it: fewer replies that say nothing (the reply filter drops a
            # repeat of the user's words): nuomi with Qwen2.5-0.5B, 4 of 70 turns with it, 11 of 54 without
            # (bench/RESULTS.md, voice_loop_zh-issue16); it does not stop the repeats in every conversation
            lines.append("用自己的话回应，不要复述用户说的话。")
        if self.refuse_topics:
            topics = ", ".join(self.refuse_topics[:-1]) + " or " if len(self.refuse_topics) > 1 else ""
            lines.append(f"Never discuss {topics}{self.refuse_topics[-1]}; politely change the subject.")
        if user_name:
            lines.append(f"You are talking with {user_name}.")
        return "\n".join(lines)

    def context_prompt(self, memories: Sequence[str] = (), knowledge: Sequence[tuple[str, str]] = ()) -> str:
        """What this turn knows: the user's memories and the knowledge notes (changes from turn to turn)."""
        lines: list[str] = []
        kept = list(memories)[: self.memory.max_memories_in_prompt] if self.memory.enabled else []
        if kept:
            lines.append("Known about this user:")
            lines += [f"- {_flat(m)}" for m in kept]
        if knowledge:
            strict = self.knowledge.answer_only_from_knowledge
            lines.append("Answer only from these notes; cite [id]:" if strict else "Notes (cite [id] if used):")
            lines += [f"[{doc_id}] {_flat(text)}" for doc_id, text in knowledge]
        if self.knowledge.answer_only_from_knowledge and (knowledge or self.mode == "customer_service"):
            when = "If the notes do not cover it," if knowledge else "You have no notes on this, so"
            lines.append(f"{when} say you don't know and offer a human: \"{_flat(self.knowledge.handoff_message)}\"")
        return "\n".join(lines)


def _flat(text: str) -> str:
    return " ".join(str(text).split())


# ---- loading ------------------------------------------------------------------------------------------------------

def _line_of(root: yaml.Node, loc: Sequence) -> int:
    """Line (1-based) of the deepest node on loc; a key that is absent gives its parent's line."""
    node, line = root, root.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            hit = next(((k, v) for k, v in node.value if k.value == str(part)), None)
            if hit is None:
                break
            line, node = hit[0].start_mark.line + 1, hit[1]  # the key's line: a block value starts below it
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _dotted(loc: Sequence) -> str:
    out = ""
    for part in loc:
        if isinstance(part, str) and "[" in part:  # pydantic's own markers, like '[key]'
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_character(path: str | Path) -> Character:
    """Read and check one card; any problem is a CharacterError naming file, line and field."""
    path = Path(path)
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CharacterError(name, [(1, "", f"cannot read the card: {e}")]) from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e)
        raise CharacterError(name, [((mark.line + 1) if mark else 1, "", f"not valid YAML: {problem}")]) from None
    if not isinstance(data, dict) or root is None:
        raise CharacterError(name, [(1, "", "a card must be a mapping of fields (name, persona, style, ...)")])
    if "id" in data:
        raise CharacterError(name, [(_line_of(root, ["id"]), "id", "the id is the file name; remove this key")])
    try:
        character = Character.model_validate({**data, "id": path.stem})
    except ValidationError as exc:
        problems = [(_line_of(root, err["loc"]), _dotted(err["loc"]), err["msg"]) for err in exc.errors()]
        raise CharacterError(name, problems) from None
    character._source = path.resolve()
    problems = []
    if character.mode == "customer_service" and character.customer_service is None:
        problems.append((_line_of(root, ["mode"]), "customer_service",
                         "mode customer_service needs a customer_service section with company"))
    for i, source in enumerate(character.knowledge_paths()):
        if not source.exists():
            problems.append((_line_of(root, ["knowledge", "sources", i]), f"knowledge.sources[{i}]",
                             f"{source} does not exist"))
    try:
        character.function_tools()
    except ValueError as exc:  # persona.tools.ToolError: a schema that is not JSON schema, names twice
        problems.append((_line_of(root, ["tools"]), getattr(exc, "param", None) or "tools", str(exc)))
    if problems:
        raise CharacterError(name, problems)
    return character


class CharacterLibrary:
    """Cards from several folders; a later folder's card overrides an earlier one with the same id.

    With hot_reload, every get/list re-checks the folders: changed cards are re-read, new ones appear, removed ones
    go. A card that breaks on edit keeps its last good version, and the error is logged once per edit.
    A broken card at construction raises: a host should not start with a typo in its character.
    """

    def __init__(self, dirs: Sequence[str | Path] = (BUILTIN_DIR,), hot_reload: bool = False):
        self.dirs = [Path(d) for d in dirs]
        self.hot_reload = hot_reload
        self.errors: dict[Path, str] = {}  # card path -> its current error, for status pages
        self._cards: dict[Path, tuple[tuple[int, int], Character]] = {}
        self._seen: dict[Path, tuple[int, int]] = {}  # stamp last tried, good or bad
        self._lock = threading.Lock()
        self._scan(strict=True)

    def _files(self) -> list[Path]:
        files = []
        for d in self.dirs:
            if d.is_dir():
                files += sorted(p for p in d.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
        return files

    def _scan(self, strict: bool = False) -> None:
        with self._lock:
            files = self._files()
            for gone in set(self._cards) - set(files):
                del self._cards[gone]
                self._seen.pop(gone, None)
                self.errors.pop(gone, None)
            for path in files:
                try:
                    st = path.stat()
                except OSError:
                    continue  # removed between listing and stat
                stamp = (st.st_mtime_ns, st.st_size)
                if self._seen.get(path) == stamp:
                    continue
                self._seen[path] = stamp
                try:
                    self._cards[path] = (stamp, load_character(path))
                    if self.errors.pop(path, None):
                        log.info("character card %s is valid again and was reloaded", path)
                except CharacterError as e:
                    if strict:
                        raise
                    self.errors[path] = str(e)
                    kept = "keeping the last good version" if path in self._cards else "not loaded"
                    log.error("character card %s is broken (%s):\n%s", path, kept, e)

    def _by_id(self) -> dict[str, Character]:
        if self.hot_reload:
            self._scan()
        rank = {d: i for i, d in enumerate(self.dirs)}
        ordered = sorted(self._cards.items(), key=lambda kv: (rank.get(kv[0].parent, 0), kv[0].name))
        return {c.id: c for _, (_, c) in ordered}  # a later folder wins

    def get(self, character_id: str) -> Character:
        cards = self._by_id()
        if character_id not in cards:
            raise KeyError(f"no character {character_id!r}; available: {', '.join(sorted(cards)) or 'none'}")
        return cards[character_id]

    def list(self) -> list[Character]:
        return sorted(self._by_id().values(), key=lambda c: c.id)
