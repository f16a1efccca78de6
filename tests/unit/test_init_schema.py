"""Starting a suite: `evalx init` templates, `evalx schema`, and defaults that fit the tiers
a suite declares (issue 17)."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from ruamel.yaml import YAML

from harness.errors import SpecError
from harness.live.devserver import DevServer
from harness.spec import Stack, load_suite, suite_schema, suite_schema_text
from harness.spec._policy import ActionPolicy
from harness.templates import SCHEMA_FILE, TEMPLATES, InitError, write_template

RunEvalx = Callable[..., subprocess.CompletedProcess[str]]
ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "schema" / "suite.schema.json"
SHIPPED = [*sorted(ROOT.glob("scenarios/*.yaml")), ROOT / "examples/custom_router/suite.yaml"]


def read_yaml(path: Path) -> Any:
    return YAML(typ="safe").load(path.read_text(encoding="utf-8"))


def check(path: Path) -> None:
    jsonschema.Draft202012Validator(json.loads(COMMITTED.read_text(encoding="utf-8"))).validate(
        read_yaml(path)
    )


# --------------------------------------------------------------------------- schema


def test_committed_schema_is_what_evalx_schema_prints(evalx: RunEvalx) -> None:
    proc = evalx("schema")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == suite_schema_text() == COMMITTED.read_text(encoding="utf-8"), (
        "regenerate it: evalx schema > schema/suite.schema.json"
    )
    jsonschema.Draft202012Validator.check_schema(suite_schema())


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_suite_validates_against_the_schema_it_names(path: Path) -> None:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# yaml-language-server: $schema=")
    assert (path.parent / first.split("=", 1)[1]).resolve() == COMMITTED
    check(path)


def test_the_schema_catches_what_an_editor_should() -> None:
    schema = suite_schema()
    validator = jsonschema.Draft202012Validator(schema)
    good = {"name": "s", "traffic": {"mix": {"a": {"weight": 1}}}, "models": {}}
    assert not list(validator.iter_errors(good))
    typo = {**good, "stack": {"retries": {"max_attempts": 3}}}
    assert [e.validator for e in validator.iter_errors(typo)] == ["additionalProperties"]
    described = schema["$defs"]["Stack"]["properties"]["tiers"]["description"]
    assert described.startswith("Capability tiers from cheapest to strongest")


# --------------------------------------------------------------------------- init


@pytest.mark.parametrize("name", list(TEMPLATES))
def test_template_validates_against_the_schema_and_loads(name: str, tmp_path: Path) -> None:
    written = write_template(name, tmp_path / "s")
    suite = tmp_path / "s" / "suite.yaml"
    assert written[0] == suite
    assert {p.name for p in written} == {"suite.yaml", SCHEMA_FILE, *TEMPLATES[name].companions}
    assert suite.read_text(encoding="utf-8").startswith(
        f"# yaml-language-server: $schema={SCHEMA_FILE}\n"
    )
    assert (tmp_path / "s" / SCHEMA_FILE).read_text(encoding="utf-8") == suite_schema_text()
    check(suite)
    load_suite(suite)


@pytest.mark.parametrize("name", ["support", "two-tier", "log-replay"])
def test_simulated_templates_run_as_written(name: str, evalx: RunEvalx, tmp_path: Path) -> None:
    proc = evalx("init", "--template", name, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "next: evalx validate suite.yaml && evalx run suite.yaml" in proc.stdout
    proc = evalx("validate", "suite.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # not even a warning
    proc = evalx("run", "suite.yaml", "--no-report", "-q", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr  # thresholds met, too
    assert Path(tmp_path, proc.stdout.strip(), "requests.parquet").is_file()


def test_live_template_validates_offline_and_runs_against_the_dev_server(
    evalx: RunEvalx, tmp_path: Path
) -> None:
    assert evalx("init", "live", "--template", "live", cwd=tmp_path).returncode == 0
    suite = tmp_path / "live" / "suite.yaml"
    proc = evalx("validate", suite)  # no server, no key
    assert proc.returncode == 0, proc.stderr
    with DevServer() as server:  # as `python -m harness.live.devserver`, on a free port
        urls = [f"models.{m}.base_url={server.base_url}" for m in ("small", "large")]
        proc = evalx("run", suite, "--set", urls[0], "--set", urls[1], "--out",
                     tmp_path / "run", "--no-report", "-q")  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert len(server.requests) >= 8  # every request went over HTTP


def test_init_never_overwrites(evalx: RunEvalx, tmp_path: Path) -> None:
    assert evalx("init", cwd=tmp_path).returncode == 0
    (tmp_path / "policy.yaml").write_text("mine\n", encoding="utf-8")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    proc = evalx("init", "--template", "two-tier", cwd=tmp_path)  # suite.yaml is there
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: suite.yaml: already there; evalx init never overwrites")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    # another name in the same folder: the schema there is the same, so it is kept
    proc = evalx("init", "two.yaml", "--template", "two-tier", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "wrote two.yaml"
    assert "suite.schema.json" not in proc.stdout


def test_init_refuses_an_unknown_template_and_a_changed_schema(tmp_path: Path) -> None:
    with pytest.raises(InitError, match="no such template; one of support, two-tier"):
        write_template("three-tier", tmp_path)
    (tmp_path / SCHEMA_FILE).write_text("{}\n", encoding="utf-8")
    with pytest.raises(InitError, match=f"{SCHEMA_FILE}: already there"):
        write_template("two-tier", tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [SCHEMA_FILE]


# --------------------------------------------------------------------------- defaults

NEWCOMER = """\
name: my-first-suite
traffic:
  requests: 300
  mix:
    routine: {weight: 0.8}
    hard: {weight: 0.2}
models:
  small:
    tier: fast
    price: {input_per_mtok: 0.15, output_per_mtok: 0.60}
    quality: {routine: 0.9, hard: 0.5}
  large:
    tier: premium
    price: {input_per_mtok: 5, output_per_mtok: 15}
    quality: {routine: 0.97, hard: 0.85}
"""
"""A two-tier suite as a newcomer writes it: no stack, no policy."""


def readme_suite() -> str:
    """The whole suite the README's "Writing a suite" shows."""
    blocks = re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text("utf-8"), re.DOTALL)
    return next(b for b in blocks if b.startswith("name: my-first-suite"))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_two_tier_suite_from_the_readme_validates_and_runs(
    evalx: RunEvalx, tmp_path: Path
) -> None:
    suite = write(tmp_path, readme_suite())
    st = load_suite(suite).suite.stack
    assert st.tiers == ["fast", "premium"]
    assert {k: (r.tier, r.max_retries) for k, r in st.routes.items()} == {
        "routine": ("fast", 2), "reasoning": ("premium", 2), "escalation": ("premium", 1)
    }  # fmt: skip
    assert st.class_routes == {"routine": "routine", "hard": "reasoning"}
    assert st.escalation.high_impact_route == "escalation"
    assert load_suite(suite).suite.policies.actions.high_impact_tiers == ["premium"]
    proc = evalx("validate", suite)
    assert proc.returncode == 0, proc.stderr
    proc = evalx("run", suite, "--out", tmp_path / "run", "--no-report", "-q")
    assert proc.returncode == 0, proc.stderr


def test_three_default_tiers_get_exactly_the_static_defaults(tmp_path: Path) -> None:
    """What keeps every shipped suite's records unchanged."""
    three = (
        NEWCOMER.replace("traffic:", "traffic:\n  edge_cases: {high_impact: 0.1}").replace(
            "    hard: {weight: 0.2}", "    hard: {weight: 0.1}\n    moderate: {weight: 0.1}"
        )
        + "  mid:\n    tier: balanced\n    quality: {routine: 0.95}\n"
    )
    loaded = load_suite(write(tmp_path, three))
    assert loaded.suite.stack == Stack()
    assert loaded.suite.policies.actions == ActionPolicy()
    sources = loaded.parameters()
    assert sources["stack.routes.escalation.tier"]["source"] == "default"
    assert sources["policies.actions.high_impact_tiers"]["source"] == "default"


def test_declared_tiers_and_own_classes(tmp_path: Path) -> None:
    text = (NEWCOMER.replace("tier: fast", "tier: cheap").replace("tier: premium", "tier: strong")
            .replace("routine", "simple").replace("hard", "complex")
            + "stack:\n  tiers: [cheap, strong]\n")  # fmt: skip
    s = load_suite(write(tmp_path, text)).suite
    assert {k: r.tier for k, r in s.stack.routes.items()} == {
        "routine": "cheap", "reasoning": "strong", "escalation": "strong"
    }  # fmt: skip
    assert s.stack.class_routes == {}  # classes of their own take the first route
    assert s.policies.actions.high_impact_tiers == ["strong"]


def test_own_routes_get_a_high_impact_route_on_the_strongest_tier(tmp_path: Path) -> None:
    text = NEWCOMER + "stack:\n  routes: {cheap: {tier: fast}, strong: {tier: premium}}\n"
    st = load_suite(write(tmp_path, text)).suite.stack
    assert st.escalation.high_impact_route == "strong"
    assert st.class_routes == {}


def test_undeclared_tier_names_get_one_error_each_and_a_hint(tmp_path: Path) -> None:
    text = NEWCOMER.replace("tier: premium", "tier: gold")
    with pytest.raises(SpecError) as err:
        load_suite(write(tmp_path, text))
    assert [str(p) for p in err.value.problems] == [
        f"{tmp_path / 'suite.yaml'}:13: models.large.tier: unknown tier 'gold' "
        "(stack.tiers lists the tiers, cheapest first); valid: fast"
    ]


def test_the_support_template_spells_out_its_defaults(tmp_path: Path) -> None:
    """Its stack block says deleting the routing keys changes nothing: check it."""
    write_template("support", tmp_path)
    full = load_suite(tmp_path / "suite.yaml")
    data = read_yaml(tmp_path / "suite.yaml")
    for key in ("tiers", "routes", "class_routes"):
        del data["stack"][key]
    del data["stack"]["escalation"]["high_impact_route"]
    bare = tmp_path / "bare.yaml"
    with bare.open("w", encoding="utf-8") as f:
        YAML(typ="safe").dump(data, f)
    assert load_suite(bare).suite_hash == full.suite_hash
