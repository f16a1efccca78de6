"""Suite fragments: `include:` merges them under the suite, errors name the fragment's line."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import SpecError
from harness.spec import load_suite

SUITE = """\
name: with-fragments
include: [fit/latency.yaml, quality.yaml]
traffic:
  requests: 10
  mix: {routine: {weight: 1}}
models:
  small:
    tier: fast
    quality: {routine: 0.9}
    capacity: 4
  big: {tier: premium, quality: {routine: 0.95}}
stack:
  tiers: [fast, premium]
  routes: {routine: {tier: fast}}
  class_routes: {routine: routine}
  escalation: {high_impact_route: null}
"""

LATENCY = """\
# fitted
models:
  small:
    latency:
      ttft: {p50_ms: 300, p99_ms: 900}
      per_output_token: {dist: empirical, values_ms: [8, 9, 10]}
    capacity: 2
    error_rate: 0.01
"""

QUALITY = """\
models:
  small:
    quality: {routine: 0.5}
    error_rate: 0.02
world:
  outcomes:
    path: ../data/outcomes.csv
    score: s
"""


def write(
    tmp_path: Path, suite: str = SUITE, latency: str = LATENCY, quality: str = QUALITY
) -> Path:
    (tmp_path / "fit").mkdir()
    (tmp_path / "fit" / "latency.yaml").write_text(latency)
    (tmp_path / "quality.yaml").write_text(quality)
    path = tmp_path / "suite.yaml"
    path.write_text(suite)
    return path


def test_fragments_merge_under_the_suite_later_ones_win(tmp_path: Path) -> None:
    loaded = load_suite(write(tmp_path))
    small = loaded.suite.models["small"]
    assert small.latency.token_aware
    assert small.latency.ttft is not None and small.latency.ttft.p99_ms == 900
    assert small.error_rate == 0.02  # the later fragment wins over the earlier
    assert small.capacity == 4  # the suite wins over its fragments
    assert small.quality == {"routine": 0.9}
    assert loaded.suite.include == ["fit/latency.yaml", "quality.yaml"]


def test_paths_in_a_fragment_are_relative_to_the_fragment(tmp_path: Path) -> None:
    loaded = load_suite(write(tmp_path))
    outcomes = loaded.suite.world.outcomes
    assert outcomes is not None
    assert Path(outcomes.path) == (tmp_path / ".." / "data" / "outcomes.csv").resolve()


def test_an_error_inside_a_fragment_names_its_file_and_line(tmp_path: Path) -> None:
    bad = LATENCY.replace("p99_ms: 900", "p99_ms: fast")
    with pytest.raises(SpecError) as err:
        load_suite(write(tmp_path, latency=bad))
    problem = err.value.problems[0]
    assert problem.file == str(tmp_path / "fit" / "latency.yaml")
    assert problem.line == 5
    assert problem.key == "models.small.latency.ttft.p99_ms"


def test_a_cross_reference_error_in_a_fragment_is_located_there(tmp_path: Path) -> None:
    bad = QUALITY + "    models: {nosuch: gemma}\n"  # line 9
    with pytest.raises(SpecError) as err:
        load_suite(write(tmp_path, quality=bad))
    problem = err.value.problems[0]
    assert problem.file == str(tmp_path / "quality.yaml")
    assert problem.line == 9
    assert "unknown model 'nosuch'" in problem.message


def test_suite_keys_keep_their_own_lines(tmp_path: Path) -> None:
    bad = SUITE.replace("capacity: 4", "capacity: -1")
    with pytest.raises(SpecError) as err:
        load_suite(write(tmp_path, suite=bad))
    problem = err.value.problems[0]
    assert problem.file == str(tmp_path / "suite.yaml")
    assert problem.line == 10


def test_a_missing_fragment_is_a_located_error(tmp_path: Path) -> None:
    path = write(tmp_path, suite=SUITE.replace("quality.yaml", "nope.yaml"))
    with pytest.raises(SpecError, match=r"suite.yaml:2: include.1: fragment .*nope.yaml not found"):
        load_suite(path)


def test_a_list_in_the_suite_replaces_the_fragments_list(tmp_path: Path) -> None:
    faults = "faults:\n  - {kind: outage, target: small}\n  - {kind: latency, target: small}\n"
    suite = SUITE + "faults:\n  - {kind: timeout, target: small}\n"
    loaded = load_suite(write(tmp_path, suite=suite, quality=QUALITY + faults))
    assert [f.kind for f in loaded.suite.faults] == ["timeout"]
    assert ("faults", 1, "kind") not in loaded.files
