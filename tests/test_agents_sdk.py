"""The OpenAI Agents SDK (@openai/agents, from npm) as a real client: a RealtimeAgent with a tool, over the
WebSocket. The SDK runs the tool itself when livehost's reply calls it, sends the result, and asks for the answer."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
SCRIPT = Path(__file__).parent / "browser" / "agents_tool.mjs"
PACKAGES = ["@openai/agents@0.20.0"]  # brings zod, which the tool schema uses


@pytest.fixture(scope="module")
def agents_sdk(tmp_path_factory):
    if not shutil.which("npm") or not shutil.which("node"):
        pytest.skip("node and npm are needed for the @openai/agents test")
    folder = tmp_path_factory.mktemp("agents")
    (folder / "package.json").write_text('{"name": "livehost-agents-test", "version": "1.0.0", "type": "module"}')
    got = subprocess.run(["npm", "install", "--no-audit", "--no-fund", *PACKAGES], cwd=folder, capture_output=True,
                         text=True, timeout=300)
    if got.returncode != 0:
        if "ENOTFOUND" in got.stderr or "ECONNREFUSED" in got.stderr or "ETIMEDOUT" in got.stderr:
            pytest.skip(f"the npm registry is unreachable: {got.stderr.strip()[-300:]}")
        pytest.fail(f"npm install {' '.join(PACKAGES)} failed: {got.stderr[-1000:]}")
    shutil.copy(SCRIPT, folder / SCRIPT.name)
    return folder


def test_a_realtime_agent_calls_its_tool_and_answers_from_the_result(server, agents_sdk):
    run = subprocess.run(["node", SCRIPT.name, server.ws_url], cwd=agents_sdk, capture_output=True, text=True,
                         timeout=180)
    lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
    assert run.returncode == 0 and lines, f"rc {run.returncode}: {run.stdout[-1000:]} {run.stderr[-1000:]}"
    result = json.loads(lines[-1])
    assert result["calls"] == ["5521"], result  # the agent's tool ran, with the order number the user said
    seen = result["seen"]
    assert "response.function_call_arguments.done" in seen and "response.output_item.done" in seen
    text = result["text"].lower()
    assert "shipped" in text and "friday" in text, result  # the answer says what the tool returned
