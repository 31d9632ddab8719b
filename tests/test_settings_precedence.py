"""Where a setting comes from: defaults < the YAML file < LIVEHOST_* environment variables < command-line flags
(as the README says), nested sections merged key by key."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from livehost.server import cli
from livehost.server.config import ConfigError, load_settings


@pytest.fixture
def config_file(tmp_path):
    path = tmp_path / "livehost.yaml"
    path.write_text("server: {port: 7000, host: 0.0.0.0}\nllm: {engine: openai, max_tokens: 33}\n")
    return path


def serve(args: list[str], env: dict) -> object:
    """`livehost serve ARGS` as a user runs it, stopped just before it loads the models."""
    seen = []
    original, cli._run = cli._run, lambda settings, stream: seen.append(settings)
    try:
        result = CliRunner().invoke(cli.main, ["serve", *args], env=env, catch_exceptions=False)
    finally:
        cli._run = original
    assert result.exit_code == 0, result.output
    return seen[0]


def test_flags_beat_the_environment_which_beats_the_file(config_file, monkeypatch):
    monkeypatch.delenv("LIVEHOST_CONFIG", raising=False)
    env = {"LIVEHOST_SERVER__PORT": "9000", "LIVEHOST_LLM__BASE_URL": "http://env.example/v1"}
    s = serve(["--config", str(config_file), "--port", "8001"], env)
    assert s.server.port == 8001  # the flag
    assert s.server.host == "0.0.0.0" and s.llm.engine == "openai" and s.llm.max_tokens == 33  # the file
    assert s.llm.base_url == "http://env.example/v1"  # the environment, merged into the file's llm section
    s = serve(["--config", str(config_file)], env)
    assert s.server.port == 9000  # no flag: the environment beats the file
    s = serve(["--config", str(config_file), "--llm-url", "http://flag.example/v1"], env)
    assert s.llm.base_url == "http://flag.example/v1" and s.llm.engine == "openai"
    s = serve(["--config", str(config_file)], {})
    assert s.server.port == 7000  # the file beats the default
    assert serve([], {}).server.port == 8000


def test_the_same_order_through_load_settings(config_file, monkeypatch):
    monkeypatch.setenv("LIVEHOST_SERVER__PORT", "9000")
    assert load_settings(config_file, {"server": {"port": 8001}}).server.port == 8001
    assert load_settings(config_file).server.port == 9000
    monkeypatch.delenv("LIVEHOST_SERVER__PORT")
    assert load_settings(config_file).server.port == 7000


def test_a_bad_flag_value_is_named(config_file):
    with pytest.raises(ConfigError, match="server.port"):
        load_settings(config_file, {"server": {"port": 0}})
