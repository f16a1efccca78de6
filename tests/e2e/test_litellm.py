"""Against a real gateway evalx did not write: a LiteLLM proxy with mock models.

Opt-in and slow: needs the `litellm` command (`pip install 'litellm[proxy]'`, kept out of
the dev extras for its size; point EVALX_LITELLM at the executable, or put it on PATH).
The proxy runs offline on loopback: `mock_response` models answer without a provider.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas.testing as pdt
import pytest

from harness.live import live_run
from harness.spec import load_suite

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "scenarios" / "replay-demo.yaml"
MASTER = "sk-" + "e1" * 32
CONFIG = """
model_list:
  - model_name: mock-small
    litellm_params:
      model: openai/gpt-4o-mini
      mock_response: "Your replacement order: charged once, refund due.\\nconfidence: 0.91"
  - model_name: mock-broken
    litellm_params:
      model: openai/gpt-4o
      mock_response: "litellm.InternalServerError"
router_settings:
  fallbacks: [{"mock-broken": ["mock-small"]}]
  num_retries: 0
"""

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    exe = os.environ.get("EVALX_LITELLM") or shutil.which("litellm")
    if exe is None:
        pytest.skip("no litellm command: pip install 'litellm[proxy]' or set EVALX_LITELLM")
    root = tmp_path_factory.mktemp("litellm")
    (root / "config.yaml").write_text(CONFIG, encoding="utf-8")
    port = _free_port()
    env = {**os.environ, "LITELLM_MASTER_KEY": MASTER, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    log = (root / "proxy.log").open("w")
    args = [exe, "--config", str(root / "config.yaml"), "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                if httpx.get(f"{url}/health/liveliness", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                pytest.fail(f"litellm exited: {(root / 'proxy.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield f"{url}/v1"
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def test_a_gateway_fallback_is_recorded_priced_and_replayed(
    proxy: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVALX_DEMO_KEY", MASTER)
    flags = [*(f"models.{m}.base_url={proxy}" for m in ("small", "medium", "large")),
             "models.small.model=mock-small", "models.medium.model=mock-broken",
             "models.large.model=mock-broken",
             "stack.escalation.confidence_threshold=0.95"]  # fmt: skip
    suite = load_suite(DEMO, flags).suite
    recorded = live_run(suite, record=tmp_path)
    spans = recorded.spans.to_pandas()
    chats = spans[spans["kind"] == "chat"]
    assert (chats["status"] == "ok").all() and len(chats) > 0
    escalated = chats[chats["gen_ai.request.model"] != "small"]
    assert len(escalated) > 0  # 0.91 < 0.95: the stack asked the broken tier, the proxy fell back
    assert escalated["detail"].str.contains("answered_by=mock-small", regex=False).all()
    assert escalated["detail"].str.contains("gateway_fallbacks=1", regex=False).all()
    small_price = (0.15, 0.60)  # priced as the model that answered, not as the one asked
    expect = (escalated["gen_ai.usage.input_tokens"] * small_price[0]
              + escalated["gen_ai.usage.output_tokens"] * small_price[1]) / 1e6  # fmt: skip
    assert escalated["cost_usd"].tolist() == pytest.approx(expect.tolist())
    monkeypatch.setenv("EVALX_DEMO_KEY", "")
    replayed = live_run(suite, replay=tmp_path)
    pdt.assert_frame_equal(recorded.spans.to_pandas(), replayed.spans.to_pandas())


def test_an_unknown_model_at_the_gateway_is_a_400_not_retried(
    proxy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVALX_DEMO_KEY", MASTER)
    flags = [*(f"models.{m}.base_url={proxy}" for m in ("small", "medium", "large")),
             "models.small.model=no-such-model"]  # fmt: skip
    spans = live_run(load_suite(DEMO, flags).suite).spans.to_pandas()
    small = spans[spans["gen_ai.request.model"] == "small"]
    assert (small["http.response.status_code"] >= 400).all()
    assert (small["http.response.status_code"] < 500).all()
    assert small.groupby("request_id").size().max() == 1
    assert small["detail"].str.contains("no-such-model", regex=False).all()
