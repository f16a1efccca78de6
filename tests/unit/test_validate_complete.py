"""`evalx validate` checks everything `run` will use (issue 15, items 3 and 6): the files a
suite names, JSON Schemas, the stack factory, tool functions, request-file assertions and
quality keys, without calling a model. Each case with its exact exit code and message; then
a corpus of generated suites (deep, aliased, huge, non-finite, unicode): validate never
exits 3 and stays within a time and memory budget, and a suite it passes also runs."""

from __future__ import annotations

import json
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from harness.cli import app
from harness.errors import EvalxError

BASE = """\
name: t
traffic:
  requests: 20
  mix:
    routine: {weight: 0.7}
    moderate: {weight: 0.2}
    hard: {weight: 0.1}
models:
  a: {tier: fast, quality: {routine: 0.9}}
  b: {tier: balanced, quality: {routine: 0.9}}
  c: {tier: premium, quality: {routine: 0.9}}
"""


def cli(*args: str | Path) -> tuple[int, str]:
    """`evalx *args` in this process: (exit code as `main` would give it, stderr)."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    error = result.exception
    if error is not None and not isinstance(error, SystemExit):
        code = 2 if isinstance(error, EvalxError) else 3
        return code, f"{type(error).__name__}: {error}"
    return result.exit_code, result.stderr


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path


def suite(text: str = BASE, extra: str = "") -> Path:
    path = Path("suite.yaml")
    path.write_text(text + extra, encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- one case each


@pytest.mark.usefixtures("work")
def test_an_invalid_args_schema_fails_validate_and_run_with_exit_2() -> None:
    path = suite(extra="tools:\n  t:\n    args_schema: {type: strin}\n")
    expected = (
        "error: suite.yaml:14: tools.t.args_schema: invalid JSON Schema at $.type: "
        "'strin' is not valid under any of the given schemas\n"
    )
    assert cli("validate", path) == (2, expected)
    assert cli("run", path, "--out", "out", "-q") == (2, expected)


@pytest.mark.usefixtures("work")
def test_a_dangling_ref_in_args_schema() -> None:
    path = suite(extra="tools:\n  t:\n    args_schema: {$ref: '#/$defs/nope'}\n")
    assert cli("validate", path) == (
        2,
        "error: suite.yaml:14: tools.t.args_schema: $ref '#/$defs/nope' does not resolve "
        "within the schema (remote references are not fetched)\n",
    )


@pytest.mark.usefixtures("work")
@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (None, "error: requests.jsonl: file not found; check the path and the directory\n"),
        ("dir", "error: requests.jsonl: is a directory, not a requests file (JSON lines)\n"),
        (
            b"\x00\xff\xfe binary",
            "error: requests.jsonl:1: not UTF-8 text (byte 0xff); save the file as UTF-8\n",
        ),
        (
            b"\n\n",
            "error: requests.jsonl: no requests in the file; write one JSON object a line\n",
        ),
        (
            b"[1, 2]\n",
            'error: requests.jsonl:1: expected a JSON object; write {"text": "...", ...}\n',
        ),
    ],
)
def test_validate_reads_traffic_file(make: bytes | str | None, expected: str) -> None:
    if make == "dir":
        Path("requests.jsonl").mkdir()
    elif isinstance(make, bytes):
        Path("requests.jsonl").write_bytes(make)
    path = suite(BASE.replace("requests: 20", "file: requests.jsonl"))
    resolved = str(Path("requests.jsonl").resolve())
    assert cli("validate", path) == (2, expected.replace("requests.jsonl", resolved))


@pytest.mark.usefixtures("work")
def test_dev_null_as_traffic_file() -> None:
    path = suite()
    assert cli("validate", path, "--set", "traffic.file=/dev/null") == (
        2,
        "error: /dev/null: is a character device, not a requests file (JSON lines); "
        "name a regular file\n",
    )


BAD_LINES = [
    ('{"id": "a", "text": "hi", "labels": 5}',
     "requests.jsonl:1: labels: expected a list of label names; "
     "labels: pii, prompt_injection, prohibited_action, high_impact"),
    ('{"id": "b", "text": "hi", "assert": [{"type": "regex", "value": "("}]}',
     "requests.jsonl:2: assert.0.value: invalid regular expression: missing ), unterminated "
     'subpattern at position 0; escape a character meant literally with a backslash ("\\\\(" '
     "in JSON)"),
    ('{"id": "c", "text": "hi", "assert": [{"type": "python", "value": "nosuchmod:f"}]}',
     "requests.jsonl:3: assert.0.value: cannot import 'nosuchmod' (No module named "
     "'nosuchmod'); install the module or put it on PYTHONPATH"),
    ('{"id": "d", "text": "hi", "assert": [{"type": "json_schema", "value": {"type": "strin"}}]}',
     "requests.jsonl:4: assert.0.value: invalid JSON Schema at $.type: 'strin' is not valid "
     "under any of the given schemas"),
    ('{"id": "e", "text": "hi", "lables": ["pii"]}',
     "requests.jsonl:5: lables: unknown key; did you mean labels?"),
    ('{"id": "f", "text": "hi", "assert": {"type": "contains", "value": "x"}}',
     'requests.jsonl:6: assert: expected a list of assertions; "assert": [{"type": '
     '"contains", "value": "..."}]'),
    ('{"id": "g", "text": "hi", "task_class": "routin"}',
     "requests.jsonl:7: task_class: unknown class 'routin'; did you mean routine?"),
    ('{"id": "h", "text": "hi", "assert": [{"type": "python", "value": "mychecks:nope"}]}',
     "requests.jsonl:8: assert.0.value: 'mychecks' has no function 'nope'"),
    ('{"id": "i", "text": "hi", "assert": [{"type": "icontain", "value": "x"}]}',
     "requests.jsonl:9: assert.0.type: expected an assertion type; did you mean icontains?"),
]  # fmt: skip


@pytest.mark.usefixtures("work")
def test_every_bad_request_line_is_reported_with_its_line() -> None:
    Path("mychecks.py").write_text("def polite(answer, request):\n    return True\n")
    good = '{"id": "z", "text": "hi", "assert": [{"type": "python", "value": "mychecks:polite"}]}'
    Path("requests.jsonl").write_text(
        "\n".join([line for line, _ in BAD_LINES] + [good]) + "\n", encoding="utf-8"
    )
    path = suite(BASE.replace("requests: 20", "file: requests.jsonl"))
    code, err = cli("validate", path)
    resolved = str(Path("requests.jsonl").resolve())  # the loader makes paths absolute
    assert (code, err.replace(resolved, "requests.jsonl").splitlines()) == (
        2,
        [f"error: {message}" for _, message in BAD_LINES],
    )
    Path("requests.jsonl").write_text(good + "\n", encoding="utf-8")
    assert cli("validate", path) == (0, "")


@pytest.mark.usefixtures("work")
def test_stack_factory_is_imported_and_called_by_validate() -> None:
    path = suite()
    assert cli("validate", path, "--set", "stack.factory=nosuchrouter:make") == (
        2,
        "error: stack.factory: cannot import 'nosuchrouter' (No module named 'nosuchrouter'); "
        f"searched {Path.cwd()} and the Python path\n",
    )
    expected = (
        "error: stack.factory: os:system(suite) raised TypeError: expected str, bytes or "
        "os.PathLike object, not Suite; a factory takes the Suite and returns an object with "
        "handle(request)\n"
    )
    assert cli("validate", path, "--set", "stack.factory=os:system") == (2, expected)
    assert cli("run", path, "--set", "stack.factory=os:system", "--out", "o", "-q") == (
        2,
        expected,
    )
    Path("boom.py").write_text("raise RuntimeError('no config')\n")
    assert cli("validate", path, "--set", "stack.factory=boom:make") == (
        2,
        "error: stack.factory: importing 'boom' raised RuntimeError: no config\n",
    )


@pytest.mark.usefixtures("work")
def test_tool_functions_are_imported_not_called() -> None:
    Path("mytools.py").write_text(
        "CALLED = []\ndef lookup(args):\n    CALLED.append(args)\n    return {}\n"
    )
    path = suite(extra='tools:\n  t:\n    function: "mytools:lookup"\n')
    assert cli("validate", path)[0] == 0
    import mytools  # type: ignore[import-not-found]

    assert mytools.CALLED == []
    path = suite(extra='tools:\n  t:\n    function: "mytools:nope"\n')
    assert cli("validate", path) == (
        2,
        "error: suite.yaml:14: tools.t.function: 'mytools' has no function 'nope'\n",
    )
    path = suite(extra='tools:\n  t:\n    function: "not a reference"\n')
    assert cli("validate", path) == (
        2,
        "error: suite.yaml:14: tools.t.function: must match the pattern "
        "^[A-Za-z_][\\w.]*:[A-Za-z_]\\w*$\n",
    )


@pytest.mark.usefixtures("work")
def test_quality_keys_must_name_task_classes() -> None:
    typo = "a: {tier: fast, quality: {routine: 0.9, moderat: 0.7}}"
    path = suite(BASE.replace("a: {tier: fast, quality: {routine: 0.9}}", typo))
    assert cli("validate", path) == (
        2,
        "error: suite.yaml:9: models.a.quality.moderat: unknown task class 'moderat' (not in "
        "traffic.mix); did you mean moderate?\n",
    )


@pytest.mark.usefixtures("work")
def test_custom_pii_patterns_are_compiled() -> None:
    extra = "policies:\n  pii:\n    custom: [{name: ticket, pattern: 'T-[0-9+'}]\n"
    assert cli("validate", suite(extra=extra)) == (
        2,
        "error: suite.yaml:14: policies.pii.custom.0.pattern: invalid regular expression: "
        "unterminated character set at position 2\n",
    )
    extra = "policies:\n  pii:\n    custom: [{name: email, pattern: 'x'}]\n"
    assert cli("validate", suite(extra=extra)) == (
        2,
        "error: suite.yaml:13: policies.pii: custom detector 'email' clashes with a built-in "
        "kind\n",
    )


@pytest.mark.usefixtures("work")
def test_a_live_suite_needs_an_endpoint_for_every_model() -> None:
    path = suite()
    flags = ["--set", "models.a.provider=openai", "--set", "models.a.base_url=http://h/v1"]
    code, err = cli("validate", path, *flags)
    assert (code, err.splitlines()) == (
        2,
        [
            "error: suite.yaml:10: models.b.provider: a suite with a real endpoint runs live: "
            "every model needs one; set provider: openai (or anthropic) and a base_url",
            "error: suite.yaml:11: models.c.provider: a suite with a real endpoint runs live: "
            "every model needs one; set provider: openai (or anthropic) and a base_url",
        ],
    )


@pytest.mark.usefixtures("work")
def test_validate_counts_the_requests_of_a_requests_file() -> None:
    Path("requests.jsonl").write_text('{"text": "a"}\n{"text": "b"}\n', encoding="utf-8")
    path = suite(BASE.replace("requests: 20", "file: requests.jsonl"))
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 0
    assert result.stdout.startswith("suite.yaml: ok (t: 2 requests, 3 models")


# ----------------------------------------------------------------------------- generated corpus


@dataclass(frozen=True)
class Raw:
    """YAML text written as is (.inf, .nan)."""

    text: str


@dataclass(frozen=True)
class Anchor:
    name: str
    value: Any


@dataclass(frozen=True)
class Alias:
    name: str


def render(value: Any) -> str:
    """Flow-style YAML, with anchors, aliases and raw scalars."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, Anchor):
        return f"&{value.name} {render(value.value)}"
    if isinstance(value, Alias):
        return f"*{value.name}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {render(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(render(v) for v in value) + "]"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


NON_FINITE = [Raw(".inf"), Raw("-.inf"), Raw(".nan")]


class Values:
    """Draws a sane value, or (in a wild suite, one field in five) an extreme one."""

    def __init__(self, draw: st.DrawFn, wild: bool) -> None:
        self.draw, self.wild = draw, wild

    def __call__(self, sane: st.SearchStrategy[Any], *extremes: Any) -> Any:
        if self.wild and self.draw(st.integers(0, 4)) == 0:
            return self.draw(st.sampled_from([*extremes, *NON_FINITE]))
        return self.draw(sane)

    def number(self, lo: float, hi: float, *extremes: Any) -> Any:
        return self(st.floats(lo, hi), *extremes)

    def probability(self) -> Any:
        return self.number(0.0, 1.0, -0.1, 1.5, 1e-300)


def deep(depth: int) -> Raw:
    return Raw("[" * depth + "]" * depth)


@st.composite
def laughs(draw: st.DrawFn) -> dict[str, Any]:
    """A free-form value of anchors and aliases: levels x branching, expanded or not."""
    levels = draw(st.integers(1, 9))
    branching = draw(st.integers(1, 9))
    out: dict[str, Any] = {"l0": Anchor("l0", ["lol"] * branching)}
    for i in range(1, levels):
        out[f"l{i}"] = Anchor(f"l{i}", [Alias(f"l{i - 1}")] * branching)
    return out


def latency(v: Values) -> dict[str, Any]:
    p50 = v.number(1.0, 5000.0, 0.0, 1e-300, 1e300, 1e15)
    p99 = v.number(6000.0, 60000.0, 0.0, 1e-300, 1e300, 1e15)
    return {"p50_ms": p50, "p99_ms": p99}


FAULT_KINDS = ["latency", "outage", "timeout", "http_error", "rate_limit", "malformed",
               "slow_first_token", "flaky_tool", "degraded_retrieval", "quality_drop",
               "price_change", "context_limit"]  # fmt: skip
SCHEMAS = [
    {"type": "object"},
    {"type": "object", "properties": {"q": {"type": "string", "minLength": 1}}, "required": ["q"]},
]
BAD_SCHEMAS = [
    {"type": "strin"},
    {"$ref": "#/$defs/x"},
    {"type": "object", "properties": {"n": {"type": "integer", "minimum": Raw(".inf")}}},
    [],
]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
ASSERTS = [
    {"type": "contains", "value": "a"},
    {"type": "regex", "value": "(?i)hello|hi"},
    {"type": "json_schema", "value": {"type": "object"}},
    {"type": "python", "value": "json:dumps"},
]
BAD_ASSERTS = [
    {"type": "regex", "value": "("},
    {"type": "python", "value": "nosuchmod:f"},
    {"type": "json_schema", "value": {"type": "strin"}},
    {"type": "contain", "value": "a"},
    {"type": "equals"},
    "contains",
]


LABELS = ["pii", "prompt_injection", "prohibited_action", "high_impact"]


@st.composite
def request_line(draw: st.DrawFn, names: list[str], wild: bool) -> str:
    """One line of a requests file; in a wild suite, sometimes anything at all."""
    chaos = (lambda: draw(st.integers(0, 3)) == 0) if wild else (lambda: False)
    if chaos():
        return json.dumps(draw(JSON))
    row: dict[str, Any] = {"text": draw(st.text(max_size=20))}
    if draw(st.booleans()):
        row["task_class"] = draw(st.text(max_size=5)) if chaos() else draw(st.sampled_from(names))
    if draw(st.booleans()):
        row["labels"] = draw(JSON) if chaos() else draw(st.lists(st.sampled_from(LABELS),
                                                                  max_size=2))  # fmt: skip
    if draw(st.booleans()):
        kinds = ASSERTS + BAD_ASSERTS if chaos() else ASSERTS
        row["assert"] = draw(st.lists(st.sampled_from(kinds), max_size=2))
    return json.dumps(row, ensure_ascii=draw(st.booleans()))


@st.composite
def suites(draw: st.DrawFn) -> tuple[str, bool, dict[str, str]]:
    """(suite text, whether it is small enough to run, files it names)."""
    v = Values(draw, wild=draw(st.integers(0, 2)) == 0)
    if v.wild and draw(st.booleans()):
        names = draw(st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=3,
                              unique=True))  # fmt: skip
    else:
        names = ["routine", "moderate", "hard"]
    huge = draw(st.integers(0, 9)) == 0
    requests = draw(st.sampled_from([10**9, 10**12, 2**63])) if huge else draw(st.integers(1, 30))
    mix = {n: {"weight": v.number(0.01, 10.0, 0.0, 1e-300, 1e300, -1.0)} for n in names}
    for n in names:
        if draw(st.booleans()):
            mix[n]["output_tokens"] = v(st.integers(1, 2000), 10**6, 10**9, 0)
    traffic: dict[str, Any] = {
        "requests": requests,
        "rate_per_s": v.number(0.1, 1000.0, 1e-300, 1e300, 0.0),
        "mix": mix,
    }
    if draw(st.booleans()):
        traffic["spikes"] = [{"start_s": v.number(0.0, 100.0),
                              "duration_s": v.number(0.1, 100.0, 1e300),
                              "multiplier": v.number(0.1, 100.0, 1e300)}]  # fmt: skip
    if draw(st.booleans()):
        traffic["edge_cases"] = {k: v.probability()
                                 for k in ("pii", "prompt_injection", "prohibited_action",
                                           "high_impact")}  # fmt: skip
    if draw(st.integers(0, 4)) == 0:
        traffic["sessions"] = {"turns": draw(st.sampled_from([1, 3, {"mean": 2.5}]))}
    models = {}
    for key, tier in (("a", "fast"), ("b", "balanced"), ("c", "premium")):
        m: dict[str, Any] = {"tier": tier, "quality": {n: v.probability() for n in names}}
        if draw(st.booleans()):
            m["latency"] = latency(v)
        if draw(st.booleans()):
            m["capacity"] = v(st.integers(1, 100), 0, 10**12)
        if draw(st.booleans()):
            m["error_rate"] = v.probability()
        models[key] = m
    data: dict[str, Any] = {"name": "gen", "traffic": traffic, "models": models}
    data["stack"] = {"class_routes": {n: "routine" for n in names}}
    if draw(st.booleans()):
        tool: dict[str, Any] = {"args_schema": v(st.sampled_from(SCHEMAS), *BAD_SCHEMAS)}
        if draw(st.booleans()):
            tool["latency"] = latency(v)
        if draw(st.booleans()):
            tool["args_example"] = draw(laughs())
        data["tools"] = {"t": tool}
        if draw(st.booleans()):
            mix[names[0]].update({"tool_steps": draw(st.integers(0, 3)), "tools": ["t"]})
    if draw(st.booleans()):
        targets = ["a", "fast", "premium", "t" if "tools" in data else "b", "retrieval"]
        data["faults"] = [
            {"kind": draw(st.sampled_from(FAULT_KINDS)), "target": draw(st.sampled_from(targets)),
             "start_s": v.number(0.0, 100.0), "duration_s": v.number(1.0, 1e4, 1e300),
             "probability": v.probability(), "max_tokens": draw(st.integers(1, 5000))}
            for _ in range(draw(st.integers(1, 2)))
        ]  # fmt: skip
    files: dict[str, str] = {}
    if not huge and draw(st.integers(0, 3)) == 0:
        lines = draw(st.lists(request_line(names, v.wild), min_size=1, max_size=6))
        files["requests.jsonl"] = "\n".join(lines) + "\n"
        traffic["file"] = "requests.jsonl"
    shape = draw(st.sampled_from(["text", "deep", "nothing"]))
    if shape == "text":
        data["description"] = draw(st.text(max_size=40))
    elif shape == "deep":
        data["description"] = deep(draw(st.sampled_from([3, 63, 64, 65, 300, 2000])))
    return render(data) + "\n", not huge, files


@pytest.mark.filterwarnings("default")  # a warning is reported, not raised: it is no failure
@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
@given(suites())
def test_generated_suites_never_crash_and_validate_implies_run(
    case: tuple[str, bool, dict[str, str]],
) -> None:
    text, small, files = case
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "suite.yaml"
        path.write_text(text, encoding="utf-8")
        for name, body in files.items():
            (Path(tmp) / name).write_text(body, encoding="utf-8")
        tracemalloc.start()
        start = time.perf_counter()
        try:
            code, err = cli("validate", path)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        elapsed = time.perf_counter() - start
        event(f"validate exit {code}" + ("" if small else " (huge)"))
        assert code in (0, 2), err
        assert elapsed < 10.0, f"validate took {elapsed:.1f} s"
        assert peak < 256 << 20, f"validate peaked at {peak / 2**20:.0f} MiB"
        if code == 0 and small:
            run_code, run_err = cli("run", path, "--out", Path(tmp) / "run", "-q", "--no-report")
            assert run_code == 0, run_err
