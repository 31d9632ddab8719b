"""The `livehost` command."""
from __future__ import annotations

import logging
import sys
from typing import Any, Optional

import click
import yaml
from pathlib import Path
from tqdm import tqdm

from livehost.server.config import ConfigError, Settings, load_settings


def _settings(config: Optional[str], overrides: dict[str, Any]) -> Settings:
    try:
        return load_settings(config, overrides)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _overrides(**flags: Any) -> dict:
    """Flags map to sections: llm_engine -> {'llm': {'engine': ...}}; unset flags change nothing."""
    out: dict[str, dict] = {}
    for name, value in flags.items():
        if value is not None:
            section, key = name.split("_", 1)
            out.setdefault(section, {})[key] = value
    return out


config_option = click.option("--config", "-c", type=click.Path(exists=True, dir_okay=False), envvar="LIVEHOST_CONFIG",
                             help="YAML settings file (sections: server, asr, vad, llm, tts). Env LIVEHOST_CONFIG.")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="livehost")
def main() -> None:
    """livehost: a real-time conversational virtual host.

    It hears (Silero VAD + Whisper), thinks (an LLM), and speaks (Piper TTS), over the OpenAI Realtime protocol
    at ws://HOST:PORT/v1/realtime. Every setting can come from a YAML file (--config), from environment
    variables (LIVEHOST_SECTION__KEY, e.g. LIVEHOST_LLM__BASE_URL), or from the flags below; run
    `livehost config` to see them all with their current values.
    """


@main.command()
@config_option
@click.option("--host", "server_host", help="Address to listen on (default 127.0.0.1).")
@click.option("--port", "server_port", type=int, help="Port to listen on (default 8000).")
@click.option("--llm-engine", "llm_engine", type=click.Choice(["llama-cpp", "openai"]),
              help="llama-cpp: the embedded GGUF model (default); openai: an OpenAI-compatible server.")
@click.option("--llm-url", "llm_base_url", help="Base URL of the OpenAI-compatible server, e.g. http://127.0.0.1:11434/v1.")
@click.option("--llm-model", "llm_model", help="GGUF path (llama-cpp) or model name (openai).")
@click.option("--asr-model", "asr_model", help="auto (default: tiny.en for English, base for other languages), tiny.en, base, or a local model folder.")
@click.option("--language", "asr_language", help="Speech language code; 'character' (default: the character's first language); 'auto' detects (not with tiny.en).")
@click.option("--character", "persona_character", help="The character a session starts with (default lumi; "
              "nuomi speaks Mandarin, mika answers from her shop's knowledge).")
@click.option("--log-level", "server_log_level", type=click.Choice(["debug", "info", "warning", "error"]))
def serve(config: Optional[str], **flags: Any) -> None:
    """Load the models and serve the Realtime API, /healthz and /metrics."""
    _run(_settings(config, _overrides(**flags)), stream=False)


def _run(settings: Settings, stream: bool) -> None:
    import uvicorn

    from livehost.server.app import create_app
    level = settings.server.log_level.upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from livehost.persona.store import StorageError
    try:
        app = create_app(settings, stream=stream)
    except StorageError as exc:  # PostgreSQL unreachable at start: the URL (password hidden) and what to check
        raise click.ClickException(str(exc)) from None
    except Exception as exc:  # a model that cannot load is the user's config problem, shown plainly
        logging.getLogger("livehost").debug("load failed", exc_info=True)
        raise click.ClickException(f"could not load the engines: {exc}") from None
    base = f"http://{settings.server.host}:{settings.server.port}"
    click.echo(f"livehost is listening on {base} (Realtime: ws://{settings.server.host}:{settings.server.port}"
               f"/v1/realtime)")
    if stream:
        click.echo(f"livestream host: state at {base}/v1/stream, chat in at {base}/v1/stream/chat, "
                   f"overlay at {base}/overlay.html")
    uvicorn.run(app, host=settings.server.host, port=settings.server.port, log_level=settings.server.log_level,
                ws_max_size=max(16 << 20, 2 * settings.server.max_message_bytes), ws_ping_interval=20)


@main.command()
@config_option
@click.option("--character", "stream_character", help="The host character (default: persona.character, lumi).")
@click.option("--twitch", "stream_twitch", metavar="CHANNEL", help="Read this Twitch channel's chat (anonymous, "
              "read-only unless stream.twitch_nick/twitch_token are set).")
@click.option("--bilibili", "stream_bilibili", type=int, metavar="ROOM", help="Read this Bilibili live room's danmaku.")
@click.option("--rtmp", "stream_rtmp", metavar="URL", help="Push the avatar and voice here, e.g. "
              "rtmp://live.example.com/app/STREAM_KEY, or a local .flv file to record.")
@click.option("--captions/--no-captions", "stream_captions", default=None, help="Burn the host's words into the "
              "video (default: on).")
@click.option("--size", "stream_size", type=int, help="Video size in pixels, square (default 512).")
@click.option("--idle-after", "stream_idle_after_s", type=float, metavar="SECONDS",
              help="Talk about the character's topics after this much quiet chat (default: from the card).")
@click.option("--host", "server_host", help="Address of the control API (default 127.0.0.1).")
@click.option("--port", "server_port", type=int, help="Port of the control API (default 8000).")
@click.option("--log-level", "server_log_level", type=click.Choice(["debug", "info", "warning", "error"]))
def stream(config: Optional[str], **flags: Any) -> None:
    """Host a livestream: read live chat, answer it in character, stream the avatar and voice over RTMP.

    Chat comes from --twitch, --bilibili and any bot or bridge that POSTs to /v1/stream/chat. Paid messages and
    mentions are answered first; duplicates, spam and blocked words are dropped; chat is never obeyed as
    instructions. Operators pause, skip and inject lines through /v1/stream/{pause,resume,skip,say}, and a
    microphone on /v1/stream/mic makes the host yield to the streamer's voice. The Realtime API of
    `livehost serve` stays available on the same port.
    """
    _run(_settings(config, _overrides(**flags)), stream=True)


@main.command()
@config_option
def prepare(config: Optional[str]) -> None:
    """Prepare and warm up every configured model (the first start does this too), then exit."""
    from livehost.server.engines import Engines
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    Engines.load(_settings(config, {}))
    click.echo("models ready")


@main.group()
def kb() -> None:
    """A character's knowledge base: the documents its answers come from (customer-service mode)."""


def _knowledge(config: Optional[str]):
    from livehost.server.engines import load_characters
    from livehost.persona.retrieval import open_stores
    settings = _settings(config, {})
    characters = load_characters(settings)
    languages = sorted({lang for c in characters.list() for lang in c.languages})
    from livehost.persona.store import StorageError
    try:
        memory, knowledge = open_stores(Path(settings.data_dir), settings.memory.embeddings, languages,
                                        settings.storage.url, settings.storage.max_queued_writes)
    except StorageError as exc:  # PostgreSQL unreachable: the URL (password hidden) and what to check
        raise click.ClickException(str(exc)) from None
    memory.close()
    return characters, knowledge


@kb.command("add")
@config_option
@click.argument("character")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
def kb_add(config: Optional[str], character: str, paths: tuple[str, ...]) -> None:
    """Ingest PATHS (Markdown, text, HTML, FAQ CSV with question,answer columns; folders too) for CHARACTER.

    Re-adding a changed file replaces its chunks; an unchanged file is skipped. The server reads the same store
    (data_dir), so restart it or add before starting.
    """
    from livehost.persona.knowledge import KnowledgeError
    from livehost.persona.retrieval import collect_sources
    characters, knowledge = _knowledge(config)
    try:
        characters.get(character)
    except KeyError as exc:
        knowledge.close()
        raise click.ClickException(str(exc).strip("'\"")) from None
    # Regular files only, size-capped, named by their path inside the folder given; symlinks out of it refused.
    found, refused = collect_sources([Path(p) for p in paths])
    try:
        for path, source in tqdm(found, desc="ingesting", unit="file"):
            try:
                click.echo(f"{path}: {knowledge.add_file(character, path, source=source)} chunks (as {source})")
            except KnowledgeError as exc:
                refused.append(str(exc))
    finally:
        knowledge.close()
    for why in refused:
        click.echo(f"skipped {why}", err=True)
    if refused:
        raise click.ClickException(f"{len(refused)} of {len(found) + len(refused)} files were not added (see above)")


@kb.command("list")
@config_option
@click.argument("character")
def kb_list(config: Optional[str], character: str) -> None:
    """List the sources in CHARACTER's knowledge base."""
    _, knowledge = _knowledge(config)
    for source in knowledge.sources(character):
        click.echo(source)
    knowledge.close()


@kb.command("remove")
@config_option
@click.argument("character")
@click.argument("source")
def kb_remove(config: Optional[str], character: str, source: str) -> None:
    """Remove SOURCE (a file name, as `kb list` shows it) from CHARACTER's knowledge base."""
    _, knowledge = _knowledge(config)
    click.echo(f"removed {knowledge.remove(character, source)} chunks")
    knowledge.close()


@main.group()
def db() -> None:
    """The shared database of a multi-node deployment (storage.url: postgresql://...)."""


@db.command("migrate")
@config_option
@click.option("--to", "url", metavar="URL", help="postgresql://user:password@host:5432/db (default: storage.url).")
@click.option("--data-dir", "data_dir", type=click.Path(file_okay=False), help="The SQLite data dir to copy "
              "(default: data_dir from the settings).")
def db_migrate(config: Optional[str], url: Optional[str], data_dir: Optional[str]) -> None:
    """Copy a SQLite data dir's memory and knowledge into PostgreSQL (idempotent: a second run gives the same rows).

    Run it once before the nodes switch to storage.url; SQLite files are only read.
    """
    from livehost.persona.store import StorageError, is_postgres_url, redact
    from livehost.persona.store_migrate import migrate_store, sqlite_stores
    from livehost.persona.store_postgres import PostgresDatabase
    settings = _settings(config, {})
    url = url or settings.storage.url
    if not url or not is_postgres_url(url):
        raise click.ClickException("give --to postgresql://user:password@host:port/database (or set storage.url)"
                                   + (f"; {redact(url)!r} is not one" if url else ""))
    source = Path(data_dir) if data_dir else Path(settings.data_dir)

    def bar(rows, desc, total):
        return tqdm(rows, desc=desc, total=total, unit="row", leave=False)
    try:
        PostgresDatabase(url, "memory").close()  # unreachable: say so before anything else
        for path in sqlite_stores(source):
            copied = migrate_store(path, url, bar)
            click.echo(f"{path}: " + ", ".join(f"{n} {table}" for table, n in copied.items())
                       + f" -> {redact(url)} (schema {path.stem.replace('-', '_')})")
    except StorageError as exc:
        raise click.ClickException(str(exc)) from None


@main.command("config")
@config_option
def show_config(config: Optional[str]) -> None:
    """Print the effective settings (defaults, file and environment merged) as YAML."""
    from livehost.persona.store import redact
    settings = _settings(config, {})
    data = settings.model_dump(mode="json")
    if data["storage"]["url"]:
        data["storage"]["url"] = redact(data["storage"]["url"])  # printed settings get pasted into issues
    yaml.safe_dump(data, sys.stdout, sort_keys=False)


if __name__ == "__main__":
    main()
