"""Bounded parsing (issue 15, items 2 and 6): every input is a regular file within a named
size, YAML aliases and nesting are capped, and non-finite numbers are refused; each case
fails fast with the exact one-line error the CLI prints (exit 2)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.compare import load_gates
from harness.data import DataError, read_log
from harness.errors import InputError, SpecError
from harness.limits import DEPTH, LIMITS, read_input
from harness.requests_file import load as load_requests
from harness.spec import load_suite
from harness.spec._load import load_suite_data

ROOT = Path(__file__).resolve().parents[2]
LIMIT_NOTE = "over the limit of {} ({} raises it)"

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


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def no_hang() -> Iterator[None]:
    """Fail instead of hanging forever if a read blocks (a FIFO)."""

    def boom(*_: object) -> None:
        raise TimeoutError("the read blocked")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(10)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def problems(exc: pytest.ExceptionInfo[SpecError]) -> list[str]:
    return [str(p) for p in exc.value.problems]


def laughs() -> str:
    """Nine levels of nine aliases: 424 bytes that expand to 9^9 strings."""
    lines = ["name: lol", 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for prev, cur in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def nested(n: int) -> str:
    return "[" * n + "]" * n


# ----------------------------------------------------------------------------- aliases


def test_billion_laughs_is_refused_in_milliseconds() -> None:
    Path("lol.yaml").write_text(laughs(), encoding="utf-8")
    assert len(laughs().encode()) < 500
    start = time.perf_counter()
    with pytest.raises(SpecError) as exc:
        load_suite_data("lol.yaml")
    assert time.perf_counter() - start < 1.0
    assert problems(exc) == [
        "lol.yaml:7: this value holds 597,871 values once its aliases are expanded, "
        "over the limit of 100,000 values (EVALX_MAX_YAML_VALUES raises it); "
        "use fewer aliases: each *name repeats its anchor's value"
    ]


def test_aliases_inside_a_free_form_field_are_bounded_too() -> None:
    text = (
        BASE
        + "tools:\n  t:\n    args_example:\n"
        + "".join(f"      {line}\n" for line in laughs().splitlines()[1:])
    )
    Path("suite.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as exc:
        load_suite("suite.yaml")
    assert problems(exc)[0].startswith("suite.yaml:20: this value holds 597,871 values")


def test_expanded_text_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVALX_MAX_YAML_TEXT", "1000")
    text = f"name: t\nx: &x {'y' * 300}\nl: [*x, *x, *x, *x]\n"
    Path("suite.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as exc:
        load_suite_data("suite.yaml")
    assert problems(exc) == [
        "suite.yaml:3: this value holds 1.17 KiB of text once its aliases are expanded, "
        "over the limit of 1000 bytes (EVALX_MAX_YAML_TEXT raises it); "
        "use fewer aliases: each *name repeats its anchor's value"
    ]


def test_alias_count_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVALX_MAX_YAML_ALIASES", "3")
    Path("suite.yaml").write_text("name: t\nx: &x 1\nl: [*x, *x, *x, *x]\n", encoding="utf-8")
    with pytest.raises(SpecError) as exc:
        load_suite_data("suite.yaml")
    assert problems(exc) == [
        "suite.yaml:3: too many YAML aliases, over the limit of 3 "
        "(EVALX_MAX_YAML_ALIASES raises it); write the values out"
    ]


def test_ordinary_anchors_and_merge_keys_still_load() -> None:
    text = "name: t\nbase: &b {p50_ms: 100, p99_ms: 900}\nm:\n  <<: *b\n  p50_ms: 200\n"
    text += "l: [*b, *b]\n"
    Path("suite.yaml").write_text(text, encoding="utf-8")
    data, _ = load_suite_data("suite.yaml")
    assert data["m"] == {"p50_ms": 200, "p99_ms": 900}
    assert data["l"] == [{"p50_ms": 100, "p99_ms": 900}] * 2


def test_a_set_value_is_bounded_like_a_file() -> None:
    Path("suite.yaml").write_text(BASE, encoding="utf-8")
    flow = "[&a [1, 1, 1, 1, 1, 1, 1, 1, 1]" + "".join(
        f", &{c} [{', '.join([f'*{p}'] * 9)}]" for p, c in zip("abcdefg", "bcdefgh", strict=True)
    ) + "]"  # fmt: skip
    with pytest.raises(SpecError) as exc:
        load_suite("suite.yaml", [f"tools.t.args_example={{x: {flow}}}"])
    assert problems(exc) == [
        "--set: tools.t.args_example: this value holds 597,871 values once its aliases are "
        "expanded, over the limit of 100,000 values (EVALX_MAX_YAML_VALUES raises it); "
        "use fewer aliases: each *name repeats its anchor's value"
    ]


# ----------------------------------------------------------------------------- nesting


def test_300_nested_lists_in_a_suite_are_an_error_not_a_recursion_error() -> None:
    Path("suite.yaml").write_text(BASE + f"description: {nested(300)}\n", encoding="utf-8")
    with pytest.raises(SpecError) as exc:
        load_suite("suite.yaml")
    assert problems(exc) == [
        "suite.yaml:12: nested too deep, over the limit of 64 levels "
        "(EVALX_MAX_DEPTH raises it); flatten the value"
    ]


def test_2000_nested_lists_in_a_gates_file() -> None:
    Path("gates.yaml").write_text(f"alpha: {nested(2000)}\n", encoding="utf-8")
    with pytest.raises(SpecError) as exc:
        load_gates("gates.yaml")
    assert problems(exc) == [
        "gates.yaml:1: nested too deep, over the limit of 64 levels "
        "(EVALX_MAX_DEPTH raises it); flatten the value"
    ]


def test_nesting_as_deep_as_the_limit_loads() -> None:
    depth = DEPTH.value - 1  # the top-level mapping is a level too
    Path("suite.yaml").write_text(f"name: t\nx: {nested(depth)}\n", encoding="utf-8")
    data, _ = load_suite_data("suite.yaml")
    assert "x" in data


def test_deep_json_in_a_requests_file() -> None:
    line = '{"text": "hi", "assert": [{"type": "json_schema", "value": {"a": ' + nested(5000)
    Path("r.jsonl").write_text('{"text": "ok"}\n' + line + "}}]}\n", encoding="utf-8")
    with pytest.raises(SpecError) as exc:
        load_requests("r.jsonl", ["routine"])
    assert problems(exc) == [
        "r.jsonl:2: nested too deep, over the limit of 64 levels "
        "(EVALX_MAX_DEPTH raises it); flatten the value"
    ]
    shallow = '{"text": "hi", "labels": ' + nested(80) + "}\n"
    Path("r.jsonl").write_text(shallow, encoding="utf-8")
    with pytest.raises(SpecError) as exc:
        load_requests("r.jsonl", ["routine"])
    assert problems(exc) == [
        "r.jsonl:1: nested too deep, over the limit of 64 levels "
        "(EVALX_MAX_DEPTH raises it); flatten the value"
    ]


# ----------------------------------------------------------------------------- files


@pytest.mark.usefixtures("no_hang")
def test_a_fifo_is_refused_without_blocking() -> None:
    os.mkfifo("suite.yaml")
    with pytest.raises(SpecError) as exc:
        load_suite_data("suite.yaml")
    assert problems(exc) == [
        "suite.yaml: is a named pipe (FIFO), not a suite file; name a regular file"
    ]
    with pytest.raises(SpecError) as exc:
        load_requests("suite.yaml", ["routine"])
    assert problems(exc) == [
        "suite.yaml: is a named pipe (FIFO), not a requests file (JSON lines); name a regular file"
    ]
    with pytest.raises(DataError) as data_exc:
        read_log("suite.yaml", format="csv", columns={"timestamp": "t"})
    assert str(data_exc.value) == (
        "suite.yaml: is a named pipe (FIFO), not a data file; name a regular file; "
        "expected a request log (a CSV file with a header row)"
    )


@pytest.mark.usefixtures("no_hang")
def test_dev_zero_and_a_directory_are_refused() -> None:
    with pytest.raises(SpecError) as exc:
        load_suite_data("/dev/zero")
    assert problems(exc) == [
        "/dev/zero: is a character device, not a suite file; name a regular file"
    ]
    with pytest.raises(SpecError) as exc:
        load_requests("/dev/zero", ["routine"])
    assert problems(exc) == [
        "/dev/zero: is a character device, not a requests file (JSON lines); name a regular file"
    ]
    Path("d").mkdir()
    with pytest.raises(SpecError) as exc:
        load_requests("d", ["routine"])
    assert problems(exc) == ["d: is a directory, not a requests file (JSON lines)"]


def test_a_file_over_its_size_limit_is_refused_before_it_is_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EVALX_MAX_SUITE_BYTES", "100")
    Path("suite.yaml").write_text(BASE, encoding="utf-8")
    with pytest.raises(SpecError) as exc:
        load_suite_data("suite.yaml")
    assert problems(exc) == [
        f"suite.yaml: the suite file is {len(BASE)} bytes, over the limit of 100 bytes "
        "(EVALX_MAX_SUITE_BYTES raises it)"
    ]
    monkeypatch.setenv("EVALX_MAX_REQUESTS_FILE_BYTES", "10")
    Path("r.jsonl").write_text('{"text": "hello there"}\n', encoding="utf-8")
    with pytest.raises(InputError) as input_exc:
        load_requests("r.jsonl", ["routine"])
    assert input_exc.value.one_line() == (
        "r.jsonl: the requests file (JSON lines) is 24 bytes, over the limit of 10 bytes "
        "(EVALX_MAX_REQUESTS_FILE_BYTES raises it)"
    )
    monkeypatch.setenv("EVALX_MAX_DATA_BYTES", "2048")
    Path("log.csv").write_text("t\n" + "1\n" * 2000, encoding="utf-8")
    with pytest.raises(DataError) as data_exc:
        read_log("log.csv", columns={"timestamp": "t"})
    assert str(data_exc.value) == (
        "log.csv: the data file is 3.91 KiB, over the limit of 2 KiB "
        "(EVALX_MAX_DATA_BYTES raises it); expected a request log (a CSV file with a header row)"
    )


def test_read_input_reads_a_regular_file_whole() -> None:
    body = os.urandom(3 << 20)
    Path("blob").write_bytes(body)
    assert read_input("blob", limit=LIMITS[2], what="data file") == body


def test_readme_lists_every_limit() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for limit in LIMITS:
        row = f"| {limit.name} | {limit.show(limit.default)} | `{limit.env}` |"
        assert row in readme, row


# ----------------------------------------------------------------------------- non-finite

FINITE = "write a finite number (e.g. 1e9 for a very large one); .inf and .nan are refused"


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            ("routine: {weight: 0.7}", "routine: {weight: .inf}"),
            f"suite.yaml:5: traffic.mix.routine.weight: .inf is not a finite number; {FINITE}",
        ),
        (
            ("requests: 20", "requests: 20\n  rate_per_s: .nan"),
            f"suite.yaml:4: traffic.rate_per_s: .nan is not a finite number; {FINITE}",
        ),
        (
            ("a: {tier: fast,", "a: {tier: fast, latency: {p50_ms: -.inf},"),
            f"suite.yaml:9: models.a.latency.p50_ms: -.inf is not a finite number; {FINITE}",
        ),
    ],
)
def test_non_finite_numbers_in_a_file(edit: tuple[str, str], expected: str) -> None:
    Path("suite.yaml").write_text(BASE.replace(*edit), encoding="utf-8")
    with pytest.raises(SpecError) as exc:
        load_suite("suite.yaml")
    assert problems(exc) == [expected]


def test_non_finite_numbers_in_free_form_fields_and_overrides() -> None:
    text = BASE + "tools:\n  t: {args_example: {limit: .inf}}\n"
    Path("suite.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as exc:
        load_suite("suite.yaml")
    assert problems(exc) == [
        f"suite.yaml:13: tools.t.args_example.limit: .inf is not a finite number; {FINITE}"
    ]
    Path("suite.yaml").write_text(BASE, encoding="utf-8")
    with pytest.raises(SpecError) as exc:
        load_suite("suite.yaml", ["traffic.mix.routine.weight=.inf"])
    assert problems(exc) == [
        f"--set: traffic.mix.routine.weight: '.inf' holds a number that is not finite; {FINITE}"
    ]
    with pytest.raises(SpecError) as exc:
        load_suite("suite.yaml", ["tools.t.args_example={a: [1, .nan]}"])
    assert problems(exc) == [
        f"--set: tools.t.args_example: '{{a: [1, .nan]}}' holds a number that is not finite; "
        f"{FINITE}"
    ]


def test_a_policy_file_error_never_repeats_the_file() -> None:
    Path("suite.yaml").write_text(BASE + "policies: {file: /etc/passwd}\n", encoding="utf-8")
    with pytest.raises(SpecError) as exc:
        load_suite("suite.yaml")
    assert problems(exc) == [
        "/etc/passwd:1: expected a mapping of policy keys at the top level, got text; "
        "start the file with `key: value` lines"
    ]
    Path("p.yaml").write_text("enforce: sk-live-0123456789\nname: [1]\n", encoding="utf-8")
    with pytest.raises(SpecError) as exc:
        load_suite("suite.yaml", policy="p.yaml")
    assert problems(exc) == [
        "p.yaml:1: enforce: expected true or false, got text",
        "p.yaml:2: name: expected a string, got a list",
    ]


# ----------------------------------------------------------------------------- unusable text


def test_lone_surrogates_and_nul_characters_are_refused() -> None:
    Path("suite.yaml").write_text('name: "\\ud800"\ndescription: "a\\0b"\n', encoding="utf-8")
    with pytest.raises(SpecError) as exc:
        load_suite_data("suite.yaml")
    assert problems(exc) == [
        "suite.yaml:1: name: text with a lone surrogate escape (e.g. \\ud800); write the "
        "characters themselves (a surrogate escape only in a valid pair)",
        "suite.yaml:2: description: text with a NUL character (\\0); remove it",
    ]
    Path("suite.yaml").write_text(BASE, encoding="utf-8")
    with pytest.raises(SpecError) as exc:
        load_suite("suite.yaml", ['traffic.file="a\\0b"'])
    assert problems(exc) == [
        "--set: traffic.file: '\"a\\\\0b\"' holds text with a NUL character (\\0); remove it"
    ]
    with pytest.raises(SpecError) as exc:  # bytes that are not UTF-8 reach argv as surrogates
        load_suite("suite.yaml", [b"description=\xff".decode("utf-8", "surrogateescape")])
    assert problems(exc) == [
        "--set: description: not UTF-8 text; write the characters themselves "
        "(a surrogate escape only in a valid pair)"
    ]
    Path("r.jsonl").write_text('{"text": "a\\ud800b"}\n', encoding="utf-8")
    with pytest.raises(SpecError) as exc:
        load_requests("r.jsonl", ["routine"])
    assert problems(exc) == [
        "r.jsonl:1: a \\u escape makes a lone surrogate; escape a character outside the basic "
        "plane as a pair of surrogates, or write it as is"
    ]


def test_a_number_longer_than_python_reads() -> None:
    Path("suite.yaml").write_text(BASE + "seed: " + "1" * 5000 + "\n", encoding="utf-8")
    with pytest.raises(SpecError) as exc:
        load_suite("suite.yaml")
    assert problems(exc) == [
        "suite.yaml:12: a whole number of more than 4300 digits; write a smaller number"
    ]
    Path("r.jsonl").write_text('{"text": "x", "id": ' + "1" * 5000 + "}\n", encoding="utf-8")
    with pytest.raises(SpecError) as exc:
        load_requests("r.jsonl", ["routine"])
    assert problems(exc) == [
        "r.jsonl:1: invalid JSON (a number too long to read); write a smaller number"
    ]
