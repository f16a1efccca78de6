"""Real requests from a JSONL file, judged by assertions (promptfoo style).

Each line is one request:

    {"id": "r1", "text": "Where is order A123?", "task_class": "routine",
     "labels": ["pii"], "assert": [{"type": "contains", "value": "A123"}]}

`task_class` must be a class of the suite's `traffic.mix` (it picks the route and tools),
`labels` are edge cases (`pii`, `prompt_injection`, `prohibited_action`, `high_impact`),
and `assert` decides success: `equals`, `contains`, `icontains`, `regex`, `json_schema`
or `python` (`module:function(answer, request) -> bool`). Without assertions a request
succeeds when it got an answer.

`load` checks every line before anything runs: its keys and their types, and each
assertion compiled (a regex compiles, a JSON Schema is a valid schema, a python assertion
names `module:function`, imported with ``code=True``). So a bad line fails `evalx
validate`, and `evalx record` before any paid call, never a run halfway.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import EvalxError, Problem, SpecError
from harness.guardrails import ToolArgsValidator, schema_problem
from harness.limits import DEPTH, REQUESTS_FILE_BYTES, check_depth, read_text
from harness.spec._load import suggest

ASSERTIONS = ("equals", "contains", "icontains", "regex", "json_schema", "python")
LABELS = ("pii", "prompt_injection", "prohibited_action", "high_impact")
KEYS = ("id", "text", "task_class", "labels", "assert")
_CODE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


@dataclass(frozen=True)
class Assertion:
    """One check on an answer, compiled when the file is loaded."""

    type: str
    value: Any
    pattern: re.Pattern[str] | None = field(default=None, compare=False)
    """`regex`: the compiled expression."""
    schema: ToolArgsValidator | None = field(default=None, compare=False)
    """`json_schema`: the checked schema (draft 2020-12; remote `$ref`s are never fetched)."""
    function: Callable[..., Any] | None = field(default=None, compare=False)
    """`python`: the imported function (None until loaded with ``code=True``)."""


@dataclass(frozen=True)
class FileRequest:
    """One line of a requests file."""

    id: str
    text: str
    task_class: str
    labels: frozenset[str]
    asserts: tuple[Assertion, ...]


class AssertionFailed(EvalxError):
    """A python assertion raised instead of answering true or false."""


def load(path: str | Path, classes: Sequence[str], *, code: bool = False) -> list[FileRequest]:
    """Read and check a requests file; SpecError lists every bad line with its number.

    With `code`, python assertions are imported here (user code runs); without it they
    are only checked for form, which is all a simulated run needs.
    """
    p = str(path)
    text = read_text(p, limit=REQUESTS_FILE_BYTES, what="requests file (JSON lines)")
    out: list[FileRequest] = []
    problems: list[Problem] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = _row(p, n, line, classes, code)
        except SpecError as err:
            problems.extend(err.problems)
            continue
        out.append(row)
    if problems:
        raise SpecError(problems)
    if not out:
        raise SpecError([Problem(p, None, "", "no requests in the file",
                                 "write one JSON object a line")])  # fmt: skip
    return out


def python_assertions(path: str | Path) -> list[tuple[int, str]]:
    """(line, `module:function`) of every python assertion: the code the file would run.

    Read without importing anything (for `--safe`); lines that do not parse are skipped,
    `load` reports them.
    """
    text = read_text(str(path), limit=REQUESTS_FILE_BYTES, what="requests file (JSON lines)")
    found: list[tuple[int, str]] = []
    for n, line in enumerate(text.splitlines(), 1):
        try:
            row = json.loads(line) if line.strip() else None
        except (ValueError, RecursionError):
            continue
        asserts = row.get("assert") if isinstance(row, dict) else None
        for a in asserts if isinstance(asserts, list) else []:
            if isinstance(a, dict) and a.get("type") == "python":
                found.append((n, str(a.get("value"))))
    return found


def _row(p: str, n: int, line: str, classes: Sequence[str], code: bool) -> FileRequest:
    def bad(key: str, message: str, hint: str | None = None) -> SpecError:
        return SpecError([Problem(p, n, key, message, hint)])

    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        raise bad("", f"invalid JSON ({err.msg})", "write one JSON object a line") from None
    except ValueError:  # a number of more digits than Python reads
        raise bad(
            "", "invalid JSON (a number too long to read)", "write a smaller number"
        ) from None
    except RecursionError:  # deeper than the parser's own stack
        raise bad("", f"nested too deep, {DEPTH.exceeded()}", "flatten the value") from None
    check_depth(row, where=p, line=n)
    if "\\u" in line and not _valid_unicode(row):
        raise bad("", "a \\u escape makes a lone surrogate", "escape a character outside the "
                  "basic plane as a pair of surrogates, or write it as is")  # fmt: skip
    if not isinstance(row, dict):
        raise bad("", "expected a JSON object", 'write {"text": "...", ...}')
    for key in row:
        if key not in KEYS:
            close = suggest(str(key), KEYS)
            hint = f"did you mean {close}?" if close else f"keys: {', '.join(KEYS)}"
            raise bad(str(key), "unknown key", hint)
    if not isinstance(row.get("text"), str):
        raise bad("text", "each line needs a string `text`")
    rid = row.get("id", n)
    if isinstance(rid, bool) or not isinstance(rid, str | int):
        raise bad("id", "expected a string or a whole number")
    cls = row.get("task_class", classes[0])
    if not isinstance(cls, str) or cls not in classes:
        shown = repr(cls) if isinstance(cls, str) else "a non-string value"
        close = suggest(cls, classes) if isinstance(cls, str) else None
        hint = f"did you mean {close}?" if close else f"classes: {', '.join(classes)}"
        raise bad("task_class", f"unknown class {shown}", hint)
    labels = row.get("labels", [])
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise bad("labels", "expected a list of label names", f"labels: {', '.join(LABELS)}")
    unknown = sorted(set(labels) - set(LABELS))
    if unknown:
        close = suggest(unknown[0], LABELS)
        hint = f"did you mean {close}?" if close else f"labels: {', '.join(LABELS)}"
        raise bad("labels", f"unknown label {unknown[0]!r}", hint)
    asserts = row.get("assert", [])
    if not isinstance(asserts, list):
        raise bad("assert", "expected a list of assertions",
                  '"assert": [{"type": "contains", "value": "..."}]')  # fmt: skip
    compiled = tuple(_assertion(a, j, bad, code) for j, a in enumerate(asserts))
    return FileRequest(str(rid), row["text"], cls, frozenset(labels), compiled)


def _valid_unicode(value: Any) -> bool:
    """Whether every text in a parsed JSON value encodes as UTF-8."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(_valid_unicode(k) and _valid_unicode(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_valid_unicode(v) for v in value)
    return True


def _assertion(a: object, j: int, bad: Callable[..., SpecError], code: bool) -> Assertion:
    key = f"assert.{j}"
    if not isinstance(a, dict) or a.get("type") not in ASSERTIONS:
        kind = a.get("type") if isinstance(a, dict) else None
        close = suggest(kind, ASSERTIONS) if isinstance(kind, str) else None
        hint = f"did you mean {close}?" if close else f"types: {', '.join(ASSERTIONS)}"
        raise bad(f"{key}.type", "expected an assertion type", hint)
    extra = sorted(set(a) - {"type", "value"})
    if extra:
        raise bad(f"{key}.{extra[0]}", "unknown key", "an assertion has `type` and `value`")
    kind, value = a["type"], a.get("value")
    if kind in ("equals", "contains", "icontains"):
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise bad(f"{key}.value", f"a {kind} assertion needs a text `value`")
        return Assertion(kind, value)
    if kind == "regex":
        if not isinstance(value, str):
            raise bad(f"{key}.value", "a regex assertion needs a text `value`")
        try:
            pattern = re.compile(value)
        except re.error as err:
            hint = 'escape a character meant literally with a backslash ("\\\\(" in JSON)'
            raise bad(f"{key}.value", f"invalid regular expression: {err}", hint) from None
        return Assertion(kind, value, pattern=pattern)
    if kind == "json_schema":
        if not isinstance(value, dict):
            raise bad(f"{key}.value", "a json_schema assertion needs a JSON Schema object")
        problem = schema_problem(value)
        if problem is not None:
            raise bad(f"{key}.value", problem)
        return Assertion(kind, value, schema=ToolArgsValidator({"answer": value}))
    if not isinstance(value, str) or _CODE.match(value) is None:
        raise bad(f"{key}.value", "a python assertion names module:function",
                  '"value": "my_checks:is_polite"')  # fmt: skip
    return Assertion(kind, value, function=_import(value, key, bad) if code else None)


def _import(ref: str, key: str, bad: Callable[..., SpecError]) -> Callable[..., Any]:
    """The function `module:function` names; user code runs here (the module's import)."""
    module_name, func = ref.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise bad(f"{key}.value", f"cannot import {module_name!r} ({err})",
                  "install the module or put it on PYTHONPATH") from None  # fmt: skip
    except Exception as err:  # the user's module failing as it loads
        raise bad(f"{key}.value", f"importing {module_name!r} raised {type(err).__name__}: "
                  f"{err}") from None  # fmt: skip
    fn = getattr(module, func, None)
    if not callable(fn):
        raise bad(f"{key}.value", f"{module_name!r} has no function {func!r}")
    return fn  # type: ignore[no-any-return]


def judge(request: FileRequest, answer: str) -> bool:
    """Whether `answer` passes every assertion of `request` (no assertions: any answer).

    Raises `AssertionFailed` when a python assertion raises: the user's check is broken,
    and a wrong verdict would be worse than stopping.
    """
    return not failed_assertions(request, answer)


def failed_assertions(request: FileRequest, answer: str) -> list[str]:
    """The assertions of `request` that `answer` fails, described (`type 'value'`); without
    assertions, an empty answer fails 'non-empty answer'. Raises as `judge` does."""
    if not request.asserts:
        return [] if answer else ["non-empty answer"]
    return [describe(a) for a in request.asserts if not _passes(a, answer, request)]


def describe(a: Assertion) -> str:
    """An assertion in a few words: its type and (shortened) value."""
    value = a.value if isinstance(a.value, str) else json.dumps(a.value, sort_keys=True)
    return f"{a.type} {value[:40] + '...' if len(value) > 40 else value!r}"


def verdict_text(failed: list[str]) -> str:
    """The `assertions` column: 'pass', or 'fail: ' and the failed assertions."""
    return "pass" if not failed else "fail: " + "; ".join(failed)


def _passes(a: Assertion, answer: str, request: FileRequest) -> bool:
    kind, value = a.type, a.value
    if kind == "equals":
        return answer.strip() == str(value).strip()
    if kind == "contains":
        return str(value) in answer
    if kind == "icontains":
        return str(value).lower() in answer.lower()
    if kind == "regex":
        assert a.pattern is not None
        return a.pattern.search(answer) is not None
    if kind == "json_schema":
        assert a.schema is not None
        try:
            instance = json.loads(answer)
        except (ValueError, RecursionError):
            return False
        try:
            return a.schema.check("answer", instance) is None
        except ValueError as err:  # a $dynamicRef that resolves nowhere
            raise AssertionFailed(f"request {request.id}: {err}") from None
    fn = a.function if a.function is not None else _import(value, "assert", _raiser(request))
    try:
        return bool(fn(answer, request))
    except Exception as err:
        raise AssertionFailed(f"request {request.id}: python assertion {value} raised "
                              f"{type(err).__name__}: {err}") from None  # fmt: skip


def _raiser(request: FileRequest) -> Callable[..., SpecError]:
    def bad(key: str, message: str, hint: str | None = None) -> SpecError:
        return SpecError([Problem(f"request {request.id}", None, key, message, hint)])

    return bad


__all__ = [
    "ASSERTIONS",
    "KEYS",
    "LABELS",
    "Assertion",
    "AssertionFailed",
    "FileRequest",
    "describe",
    "failed_assertions",
    "judge",
    "load",
    "python_assertions",
    "verdict_text",
]
