"""A fit is a value with provenance: the YAML fragment, its header, and that a suite
accepts what it holds."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import re
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from ruamel.yaml import YAML

from harness.data import _fragment
from harness.data._fit_latency import fit_latency
from harness.data._fit_quality import fit_quality
from harness.data._fit_traffic import fit_traffic
from harness.data._fragment import Fit, Source, evalx_version, provenance
from harness.spec import Suite


def token_calls(n: int = 300, seed: int = 0, model: str = "m") -> pa.Table:
    rng = np.random.default_rng(seed)
    out = rng.integers(50, 400, n)
    ttft = 0.2 * np.exp(0.3 * rng.standard_normal(n))
    ttft[:5] *= 40  # a few very slow first tokens: the empirical shape
    lat = ttft + out * 0.02 * np.exp(0.1 * rng.standard_normal(n))
    return pa.table(
        {
            "model": [model] * n,
            "ttft_s": ttft,
            "latency_s": lat,
            "input_tokens": pa.array(np.full(n, 550), pa.int64()),
            "output_tokens": pa.array(out, pa.int64()),
            "status": ["ok"] * (n - 3) + ["error"] * 3,
        }
    )


def arrivals(n: int = 3000, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    return pa.table(
        {
            "timestamp_s": 1.7e9 + np.cumsum(rng.exponential(0.5, n)),
            "input_tokens": np.maximum(1, np.rint(700 * np.exp(rng.normal(0, 0.6, n)))),
            "output_tokens": np.maximum(1, np.rint(150 * np.exp(rng.normal(0, 0.4, n)))),
        }
    )


def outcome_table() -> pa.Table:
    rng = np.random.default_rng(0)
    ids = [str(i) for i in range(200)]
    u = rng.random(200)
    return pa.table(
        {
            "id": ids * 2,
            "model": ["big"] * 200 + ["small"] * 200,
            "score": np.r_[(u < 0.8) + rng.random(200) * 0.1, (u < 0.5) + rng.random(200) * 0.1],
        }
    )


def load(text: str) -> Any:
    return YAML(typ="safe", pure=True).load(io.StringIO(text))


def unwrapped_header(text: str) -> str:
    """The comment block with wrapped lines joined again."""
    header = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))
    return re.sub(r"\n#\s{4,}", " ", header)


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def test_provenance_dates_and_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    p = provenance([], 3, created=dt.date(2024, 5, 1), command="evalx fit latency x.json")
    assert (p.created, p.rows_used, p.command) == ("2024-05-01", 3, "evalx fit latency x.json")
    assert p.version == metadata.version("evalx")
    assert provenance([], 0).created == dt.datetime.now(dt.UTC).date().isoformat()

    def missing(name: str) -> str:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(f"{_fragment.__name__}.metadata.version", missing)
    assert evalx_version() == "unknown"


def test_source_hashes_the_file(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(b"a,b\n1,2\n")
    assert Source.of(path, 1) == Source(str(path), hashlib.sha256(b"a,b\n1,2\n").hexdigest(), 1)
    assert Source.of(tmp_path / "gone.csv", 5).sha256 is None


@pytest.mark.parametrize("kind", ["latency", "traffic", "quality"])
def test_the_yaml_is_the_fragment_with_its_provenance_on_top(kind: str, tmp_path: Path) -> None:
    data = tmp_path / "data.bin"
    data.write_bytes(b"observed")
    src = Source.of(data, 123)
    fits: dict[str, Fit] = {
        "latency": fit_latency(token_calls(), sources=[src], created="2024-05-01", command="c"),
        "traffic": fit_traffic(arrivals(), sources=[src], created="2024-05-01", command="c"),
        "quality": fit_quality(outcome_table(), ">= 1", sources=[src], created="2024-05-01"),
    }
    fit = fits[kind]
    out = fit.write(tmp_path / f"{kind}.yaml")
    text = out.read_text()
    assert load(text) == fit.to_fragment()  # every number exactly as fitted
    header = unwrapped_header(text)
    version = evalx_version()
    assert header.startswith(f"# Fitted by evalx {version} on 2024-05-01 ({kind}).\n")
    assert f"{data} sha256:{src.sha256} rows=123" in header
    assert f"# Rows used: {fit.provenance.rows_used}\n" in header
    for c in fit.components():
        assert f"{c.key}: {c.describe}: {c.gof.summary()}" in header
    assert all(line == line.rstrip() for line in text.splitlines())
    assert all(len(line) <= 100 for line in text.splitlines() if line.startswith("#"))


def test_values_are_written_in_flow_style_on_few_lines(tmp_path: Path) -> None:
    fit = fit_latency(token_calls(), created="2024-05-01")
    ttft = fit.models["m"].ttft
    assert ttft is not None and ttft.kind == "empirical" and len(ttft.values_ms) == 297
    text = fit.write(tmp_path / "f.yaml").read_text()
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if "values_ms: [" in line)
    end = next(i for i in range(start, len(lines)) if lines[i].rstrip().endswith("]"))
    assert end - start + 1 <= len(ttft.values_ms) // 8  # many values to a line
    assert all(len(line) <= 100 for line in lines[start : end + 1])


def test_numbers_are_rounded_for_reading() -> None:
    frag = fit_latency(token_calls(), created="2024-05-01").to_fragment()

    def numbers(x: Any) -> list[float]:
        if isinstance(x, dict):
            return [v for item in x.values() for v in numbers(item)]
        if isinstance(x, list):
            return [v for item in x for v in numbers(item)]
        return [x] if isinstance(x, float) else []

    values = numbers(frag)
    assert values
    assert all(len(f"{abs(v):.15g}".replace(".", "").strip("0")) <= 5 for v in values)


def test_a_suite_accepts_what_the_fits_write() -> None:
    """Hand-written suite + the three fragments (as `include` merges them) validates."""
    latency = fit_latency(token_calls(model="mini")).to_fragment()
    traffic = fit_traffic(arrivals()).to_fragment()
    quality = fit_quality(outcome_table(), ">= 1", {"mini": "small"}, path="o.csv").to_fragment()
    suite: dict[str, Any] = {
        "name": "fitted",
        "traffic": {"mix": {"default": {"weight": 1}}},
        "models": {"mini": {"tier": "fast", "quality": {}}},
        "stack": {"tiers": ["fast"]},
    }
    for frag in (latency, traffic, quality):
        suite = merge(suite, frag)
    parsed = Suite.model_validate(suite)
    assert parsed.models["mini"].latency.token_aware
    assert parsed.world.outcomes is not None and parsed.world.outcomes.models == {"mini": "small"}
    assert parsed.traffic.rate_per_s == traffic["traffic"]["rate_per_s"]
