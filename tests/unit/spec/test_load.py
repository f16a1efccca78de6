"""Loading YAML with lines, --set overrides, and validation errors users can act on."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field, model_validator

from harness.errors import Problem, SpecError
from harness.spec._load import (
    KeyPath,
    LineMap,
    apply_overrides,
    load_suite_data,
    locate_key,
    suggest,
    validate,
)

# --------------------------------------------------------------------- test models


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Retries(_Strict):
    max_attempts: int = Field(default=3, gt=0)
    backoff_s: float = Field(default=0.5, ge=0)


class Stack(_Strict):
    router: Literal["cascade", "static"] = "cascade"
    retries: Retries = Field(default_factory=Retries)


class Lognormal(_Strict):
    kind: Literal["lognormal"]
    p50_ms: float = Field(gt=0)
    p99_ms: float = Field(gt=0)


class Exponential(_Strict):
    kind: Literal["exponential"]
    mean_ms: float = Field(gt=0)


class Constant(_Strict):
    kind: Literal["constant"]
    value_ms: float = Field(ge=0)


class ModelSpec(_Strict):
    tier: Literal["small", "medium", "large"]
    price_in: float = Field(default=0.0, ge=0, alias="price_per_mtok_in")
    latency: Annotated[Lognormal | Exponential | Constant, Field(discriminator="kind")]


class Fault(_Strict):
    kind: Literal["latency", "outage"]
    target: str
    probability: float = Field(default=1.0, ge=0, le=1)


class Poisson(_Strict):
    rate_per_s: float = Field(gt=0)


class Bursty(_Strict):
    base_per_s: float = Field(gt=0)
    burst_per_s: float = Field(gt=0)


class Suite(_Strict):
    name: str
    seed: int = 0
    arrival: Poisson | Bursty = Field(default_factory=lambda: Poisson(rate_per_s=1.0))
    models: dict[str, ModelSpec]
    faults: list[Fault] = Field(default_factory=list)
    stack: Stack = Field(default_factory=Stack)
    status_weights: dict[int, float] = Field(default_factory=dict)
    notes: str | None = None


class Anything(BaseModel):
    """A model that says nothing about its keys, for overrides on arbitrary data."""

    model_config = ConfigDict(extra="allow")


SUITE = """\
name: demo
seed: 7
models:
  small:
    tier: small
    price_per_mtok_in: 0.2
    latency:
      kind: lognormal
      p50_ms: 300
      p99_ms: 1200
faults:
  - {kind: outage, target: small, probability: 0.5}
stack:
  retries:
    max_attempts: 3
"""


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run in a temporary directory so problems name `suite.yaml`, as a user would see."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(text: str, name: str = "suite.yaml") -> str:
    Path(name).write_text(text, encoding="utf-8")
    return name


def problems(exc: pytest.ExceptionInfo[SpecError]) -> list[str]:
    return [str(p) for p in exc.value.problems]


def check(text: str, overrides: Sequence[str] = ()) -> list[str]:
    """Load, override and validate `text` as suite.yaml; return the problems as printed."""
    data, lines = load_suite_data(write(text))
    data, sources = apply_overrides(data, overrides, Suite)
    with pytest.raises(SpecError) as exc:
        validate(data, Suite, file="suite.yaml", lines=lines, overridden=sources)
    return problems(exc)


# --------------------------------------------------------------------------- loading


@pytest.mark.usefixtures("in_tmp")
class TestLoad:
    def test_plain_data_and_lines(self) -> None:
        data, lines = load_suite_data(write(SUITE))
        assert data["faults"] == [{"kind": "outage", "target": "small", "probability": 0.5}]
        assert type(data["faults"][0]["probability"]) is float
        assert type(data["seed"]) is int
        assert type(data["models"]) is dict
        assert type(data["faults"]) is list
        assert lines[("name",)] == 1
        assert lines[("models", "small", "latency", "p99_ms")] == 10
        assert lines[("faults", 0)] == 12
        assert lines[("faults", 0, "target")] == 12
        assert lines[("stack", "retries", "max_attempts")] == 15

    def test_anchors_and_merge_keys_become_plain_copies(self) -> None:
        text = "base: &b {p50_ms: 1, p99_ms: 2}\nother:\n  <<: *b\n  p99_ms: 3\n"
        data, lines = load_suite_data(write(text))
        assert data == {"base": {"p50_ms": 1, "p99_ms": 2}, "other": {"p99_ms": 3, "p50_ms": 1}}
        assert lines[("other", "p99_ms")] == 4

    def test_missing_file(self) -> None:
        with pytest.raises(SpecError) as exc:
            load_suite_data("nope.yaml")
        assert problems(exc) == ["nope.yaml: file not found; check the path and the directory"]

    def test_directory(self) -> None:
        Path("adir").mkdir()
        with pytest.raises(SpecError) as exc:
            load_suite_data(Path("adir"))
        assert problems(exc) == ["adir: is a directory, not a suite file"]

    def test_not_utf8(self) -> None:
        Path("suite.yaml").write_bytes(b"name: demo\nnotes: caf\xe9\n")
        with pytest.raises(SpecError) as exc:
            load_suite_data("suite.yaml")
        assert problems(exc) == ["suite.yaml:2: not UTF-8 text (byte 0xe9); save the file as UTF-8"]

    def test_syntax_error_names_its_line(self) -> None:
        with pytest.raises(SpecError) as exc:
            load_suite_data(write("name: demo\nfaults: [1, 2\nseed: 3\n"))
        assert problems(exc) == [
            "suite.yaml:3: invalid YAML: expected ',' or ']', but got ':' "
            "(while parsing a flow sequence on line 2)"
        ]

    def test_tab_indentation(self) -> None:
        with pytest.raises(SpecError) as exc:
            load_suite_data(write("stack:\n\tretries: 1\n"))
        [problem] = exc.value.problems
        assert (problem.line, problem.hint) == (2, "indent with spaces; YAML does not allow tabs")

    def test_duplicate_keys_name_both_lines(self) -> None:
        text = "name: a\nstack:\n  router: static\n  retries: {}\n  router: cascade\nname: b\n"
        with pytest.raises(SpecError) as exc:
            load_suite_data(write(text))
        assert problems(exc) == [
            "suite.yaml:5: stack.router: duplicate key, first defined on line 3; keep only one",
            "suite.yaml:6: name: duplicate key, first defined on line 1; keep only one",
        ]

    def test_quoted_and_plain_number_keys_are_different_keys(self) -> None:
        data, _ = load_suite_data(write("status_weights:\n  500: 1\n  '500': 2\n"))
        assert data == {"status_weights": {500: 1, "500": 2}}

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            (
                "",
                "suite.yaml:1: expected a mapping of suite keys at the top level, "
                "got an empty file; start the file with `key: value` lines",
            ),
            (
                "- a\n- b\n",
                "suite.yaml:1: expected a mapping of suite keys at the top level, "
                "got a list; start the file with `key: value` lines",
            ),
        ],
    )
    def test_top_level_must_be_a_mapping(self, text: str, expected: str) -> None:
        with pytest.raises(SpecError) as exc:
            load_suite_data(write(text))
        assert problems(exc) == [expected]

    def test_custom_tags_are_rejected(self) -> None:
        with pytest.raises(SpecError) as exc:
            load_suite_data(write("name: demo\nnotes: !secret xyz\n"))
        assert problems(exc) == [
            "suite.yaml:2: notes: unsupported YAML tag !secret; remove the tag"
        ]


# ------------------------------------------------------------------------- overrides


class TestOverrides:
    def test_nested_key_and_list_item(self) -> None:
        data: dict[str, Any] = {
            "stack": {"retries": {"max_attempts": 3}},
            "faults": [{"probability": 1.0}],
        }
        overrides = ["stack.retries.max_attempts=5", "faults.0.probability=0.5"]
        new, sources = apply_overrides(data, overrides, Suite)
        assert new == {"stack": {"retries": {"max_attempts": 5}}, "faults": [{"probability": 0.5}]}
        assert sources == {
            ("stack", "retries", "max_attempts"): "stack.retries.max_attempts=5",
            ("faults", 0, "probability"): "faults.0.probability=0.5",
        }
        assert data["faults"][0]["probability"] == 1.0, "the input is not mutated"

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("3", 3),
            ("0.5", 0.5),
            ("true", True),
            ("null", None),
            ("[1, 2]", [1, 2]),
            ("{a: 1}", {"a": 1}),
            ("hello world", "hello world"),
            ("'42'", "42"),
            ("a: b", "a: b"),
            ("- x", "- x"),
            (" 7 ", 7),
            ("", ""),
        ],
    )
    def test_values_are_yaml(self, value: str, expected: Any) -> None:
        new, _ = apply_overrides({}, [f"extra.x={value}"], Anything)
        assert new == {"extra": {"x": expected}}

    def test_text_fields_keep_the_text(self) -> None:
        new, _ = apply_overrides({}, ["name=007", "faults.0.target=1.10", "seed=007"], Suite)
        assert new == {"name": "007", "faults": [{"target": "1.10"}], "seed": 7}

    def test_creates_intermediate_mappings_and_lists(self) -> None:
        new, sources = apply_overrides(
            {}, ["stack.retries.backoff_s=2", "faults.0.kind=outage"], Suite
        )
        assert new == {"stack": {"retries": {"backoff_s": 2}}, "faults": [{"kind": "outage"}]}
        assert list(sources) == [("stack", "retries", "backoff_s"), ("faults", 0, "kind")]

    def test_index_one_past_the_end_appends(self) -> None:
        new, _ = apply_overrides(
            {"faults": [{"kind": "outage"}]}, ["faults.1={kind: latency}"], Suite
        )
        assert new == {"faults": [{"kind": "outage"}, {"kind": "latency"}]}

    def test_number_keys_follow_the_model_and_the_data(self) -> None:
        new, sources = apply_overrides({}, ["status_weights.503=0.2"], Suite)
        assert new == {"status_weights": {503: 0.2}}
        assert list(sources) == [("status_weights", 503)]
        new, _ = apply_overrides({"extra": {"7": 1}}, ["extra.7=2", "extra.8=3"], Anything)
        assert new == {"extra": {"7": 2, "8": 3}}

    def test_later_override_wins(self) -> None:
        new, sources = apply_overrides({}, ["seed=1", "seed=2"], Suite)
        assert new == {"seed": 2}
        assert sources == {("seed",): "seed=2"}

    def test_union_member_is_followed_by_tag(self) -> None:
        data = {"models": {"m": {"latency": {"kind": "constant", "value_ms": 1}}}}
        new, _ = apply_overrides(data, ["models.m.latency.value_ms=2"], Suite)
        assert new["models"]["m"]["latency"] == {"kind": "constant", "value_ms": 2}

    @pytest.mark.parametrize(
        ("override", "expected"),
        [
            (
                "seed",
                "--set: seed: expected key=value, got 'seed'; write it as --set "
                "path.to.key=value, e.g. --set stack.retries.max_attempts=3",
            ),
            (
                "=3",
                "--set: expected key=value, got '=3'; write it as --set "
                "path.to.key=value, e.g. --set stack.retries.max_attempts=3",
            ),
            (
                "stack..router=static",
                "--set: stack..router: empty part in the key; write it as --set "
                "path.to.key=value, e.g. --set stack.retries.max_attempts=3",
            ),
            (
                "faults.3.kind=outage",
                "--set: faults.3: item 3 is out of range: faults has 1 item(s); "
                "use 0 to 1 (1 adds an item)",
            ),
            (
                "faults.first.kind=outage",
                "--set: faults.first: faults is a list; expected an item number, got 'first'; "
                "use faults.0, ...",
            ),
            (
                "seed.value=3",
                "--set: seed.value: cannot set a key inside seed: it is 7; "
                "set it whole: --set seed=...",
            ),
            (
                "stack={router: [",
                "--set: stack: invalid YAML value '{router: [': "
                "expected the node content, but found '<stream end>'; "
                "quote text that starts with [ or {, e.g. key='[draft]'",
            ),
        ],
    )
    def test_bad_overrides(self, override: str, expected: str) -> None:
        data = {"seed": 7, "faults": [{"kind": "latency"}]}
        with pytest.raises(SpecError) as exc:
            apply_overrides(data, [override], Suite)
        assert problems(exc) == [expected]

    def test_every_bad_override_is_reported(self) -> None:
        with pytest.raises(SpecError) as exc:
            apply_overrides({}, ["a", "seed=1", "b"], Suite)
        assert [p.key for p in exc.value.problems] == ["a", "b"]


_KEY = st.from_regex(r"[a-z_][a-z0-9_]{0,7}", fullmatch=True)
_SCALAR = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(categories=("L", "N", "P", "S", "Zs")), max_size=20)
)
_VALUE = st.recursive(
    _SCALAR,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_KEY, inner, max_size=3),
    max_leaves=8,
)


@given(path=st.lists(_KEY, min_size=1, max_size=4), value=_VALUE)
def test_any_override_round_trips_into_the_data(path: list[str], value: Any) -> None:
    """A JSON-written value (valid YAML flow) under any new key path lands there intact."""
    override = f"{'.'.join(path)}={json.dumps(value, ensure_ascii=False)}"
    new, sources = apply_overrides({"keep": 1}, [override], Anything)
    node: Any = new
    for key in path:
        node = node[key]
    assert node == value
    assert new["keep"] == 1
    assert sources == {tuple(path): override}


# ------------------------------------------------------------------------ validation


@pytest.mark.usefixtures("in_tmp")
class TestValidate:
    def test_valid_suite(self) -> None:
        data, lines = load_suite_data(write(SUITE))
        suite = validate(data, Suite, file="suite.yaml", lines=lines)
        assert suite.stack.retries.max_attempts == 3
        assert suite.models["small"].price_in == 0.2

    def test_unknown_key_names_file_line_key_and_suggestion(self) -> None:
        text = SUITE.replace("  retries:\n    max_attempts: 3", "  retries: {max_atempts: 3}")
        assert check(text) == [
            "suite.yaml:14: stack.retries.max_atempts: unknown key; did you mean max_attempts?"
        ]

    def test_unknown_key_without_a_close_match_lists_the_valid_keys(self) -> None:
        assert check(SUITE + "  color: red\n") == [
            "suite.yaml:16: stack.color: unknown key; valid keys: router, retries"
        ]

    def test_unknown_key_suggests_the_alias(self) -> None:
        text = SUITE.replace("price_per_mtok_in", "price_per_mtok_inn")
        assert check(text) == [
            "suite.yaml:6: models.small.price_per_mtok_inn: unknown key; "
            "did you mean price_per_mtok_in?"
        ]

    def test_every_problem_is_reported_in_line_order(self) -> None:
        text = (
            SUITE.replace("seed: 7", "seed: abc")
            .replace("p50_ms: 300", "p50_ms: -1")
            .replace("tier: small", "tier: smal")
            .replace("probability: 0.5", "probability: 1.5")
        )
        assert check(text) == [
            "suite.yaml:2: seed: expected an integer, got 'abc'",
            "suite.yaml:5: models.small.tier: expected one of 'small', 'medium', 'large', "
            "got 'smal'; did you mean 'small'?",
            "suite.yaml:9: models.small.latency.p50_ms: must be > 0",
            "suite.yaml:12: faults.0.probability: must be <= 1",
        ]

    def test_missing_key_points_at_its_parent(self) -> None:
        text = SUITE.replace("      p99_ms: 1200\n", "")
        assert check(text) == [
            "suite.yaml:7: models.small.latency.p99_ms: required key missing; add `p99_ms: ...`"
        ]

    def test_missing_top_level_key_has_no_line(self) -> None:
        assert check("seed: 1\n") == [
            "suite.yaml: name: required key missing; add `name: ...`",
            "suite.yaml: models: required key missing; add `models: ...`",
        ]

    def test_wrong_tag_in_a_tagged_union(self) -> None:
        assert check(SUITE.replace("kind: lognormal", "kind: lognormel")) == [
            "suite.yaml:8: models.small.latency.kind: expected one of 'lognormal', "
            "'exponential', 'constant', got 'lognormel'; did you mean 'lognormal'?"
        ]

    def test_missing_tag_in_a_tagged_union(self) -> None:
        assert check(SUITE.replace("      kind: lognormal\n", "")) == [
            "suite.yaml:7: models.small.latency.kind: required key missing; add `kind: ...`"
        ]

    def test_member_of_a_tagged_union_knows_its_keys(self) -> None:
        text = SUITE.replace("p99_ms: 1200", "p99_ms: 1200\n      p95_ms: 900")
        assert check(text) == [
            "suite.yaml:11: models.small.latency.p95_ms: unknown key; did you mean p99_ms?"
        ]

    def test_plain_union_reports_only_the_member_meant(self) -> None:
        text = SUITE + "arrival:\n  base_per_s: 2\n  burst_per_s: x\n  burst_per_sec: 3\n"
        assert check(text) == [
            "suite.yaml:18: arrival.burst_per_s: expected a number, got 'x'",
            "suite.yaml:19: arrival.burst_per_sec: unknown key; did you mean burst_per_s?",
        ]

    def test_plain_union_with_the_wrong_shape(self) -> None:
        assert check(SUITE + "arrival: fast\n") == [
            "suite.yaml:16: arrival: expected a mapping, got 'fast'"
        ]

    def test_dict_keys_are_checked(self) -> None:
        text = SUITE + "status_weights:\n  500: 0.5\n  five: 0.5\n"
        assert check(text) == [
            "suite.yaml:18: status_weights.five: invalid key: expected an integer, got 'five'"
        ]

    def test_wrong_type_for_a_section(self) -> None:
        assert check(SUITE.replace("faults:\n  - {", "faults:\n  {") + "") == [
            "suite.yaml:11: faults: expected a list, got a mapping"
        ]

    def test_bad_override_value_is_reported_against_set(self) -> None:
        assert check(SUITE, ["faults.0.probability=2", "seed=1"]) == [
            "--set: faults.0.probability: must be <= 1"
        ]

    def test_unknown_key_from_an_override_is_reported_against_set(self) -> None:
        assert check(SUITE, ["stack.retries.max_atempts=4"]) == [
            "--set: stack.retries.max_atempts: unknown key; did you mean max_attempts?"
        ]

    def test_unknown_section_from_an_override(self) -> None:
        assert check(SUITE, ["stak.router=static"]) == [
            "--set: stak: unknown key; did you mean stack?"
        ]

    def test_missing_key_in_an_item_added_by_override(self) -> None:
        assert check(SUITE, ["faults.1.kind=latency"]) == [
            "--set: faults.1.target: required key missing; add `target: ...`"
        ]

    def test_override_of_a_whole_section_owns_the_keys_below(self) -> None:
        assert check(SUITE, ["stack={retries: {max_attempts: 0}}"]) == [
            "--set: stack.retries.max_attempts: must be > 0"
        ]

    def test_file_problems_beside_override_problems(self) -> None:
        text = SUITE.replace("seed: 7", "seed: x")
        assert check(text, ["stack.router=fast"]) == [
            "suite.yaml:2: seed: expected an integer, got 'x'",
            "--set: stack.router: expected one of 'cascade', 'static', got 'fast'",
        ]

    def test_validator_messages_are_kept(self) -> None:
        class Window(_Strict):
            start: float
            end: float

            @model_validator(mode="after")
            def _ordered(self) -> Window:
                if self.end < self.start:
                    raise ValueError("end must not be before start")
                return self

        class Checked(_Strict):
            window: Window

        data, lines = load_suite_data(write("window:\n  start: 2\n  end: 1\n"))
        with pytest.raises(SpecError) as exc:
            validate(data, Checked, file="suite.yaml", lines=lines)
        assert problems(exc) == ["suite.yaml:1: window: end must not be before start"]


def test_locate_key() -> None:
    lines: LineMap = {("stack",): 3, ("stack", "retries"): 4}
    assert locate_key(("stack", "retries", "x"), file="s.yaml", lines=lines) == ("s.yaml", 4)
    assert locate_key(("seed",), file="s.yaml", lines=lines) == ("s.yaml", None)
    overridden: list[KeyPath] = [("stack", "router")]
    assert locate_key(("stack", "router"), file="s.yaml", lines=lines, overridden=overridden) == (
        "--set",
        None,
    )


@pytest.mark.parametrize(
    ("word", "options", "expected"),
    [
        ("max_atempts", ["max_attempts", "backoff_s"], "max_attempts"),
        ("Max_Attempts", ["max_attempts"], "max_attempts"),
        ("color", ["router", "retries"], None),
        ("p95", [], None),
    ],
)
def test_suggest(word: str, options: list[str], expected: str | None) -> None:
    assert suggest(word, options) == expected


def test_problem_printing_matches_the_house_format() -> None:
    problem = Problem(
        "suite.yaml", 14, "stack.retries.max_atempts", "unknown key", "did you mean max_attempts?"
    )
    assert (
        str(problem)
        == "suite.yaml:14: stack.retries.max_atempts: unknown key; did you mean max_attempts?"
    )
