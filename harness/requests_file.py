"""Real requests from a JSONL file, judged by assertions (promptfoo style).

Each line is one request:

    {"id": "r1", "text": "Where is order A123?", "task_class": "routine",
     "labels": ["pii"], "assert": [{"type": "contains", "value": "A123"}]}

`task_class` must be a class of the suite's `traffic.mix` (it picks the route and tools),
`labels` are edge cases (`pii`, `prompt_injection`, `prohibited_action`, `high_impact`),
and `assert` decides success: `equals`, `contains`, `icontains`, `regex`, `json_schema`
or `python` (`module:function(answer, request) -> bool`). Without assertions a request
succeeds when it got an answer.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import Problem, SpecError

ASSERTIONS = ("equals", "contains", "icontains", "regex", "json_schema", "python")
LABELS = ("pii", "prompt_injection", "prohibited_action", "high_impact")


@dataclass(frozen=True)
class FileRequest:
    """One line of a requests file."""

    id: str
    text: str
    task_class: str
    labels: frozenset[str]
    asserts: tuple[Mapping[str, Any], ...]


def load(path: str | Path, classes: Sequence[str]) -> list[FileRequest]:
    """Read and check a requests file; SpecError lists every bad line with its number."""
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        problem = Problem(str(p), None, "", f"cannot read requests file ({err.strerror})",
                          "check traffic.file (relative to the suite)")  # fmt: skip
        raise SpecError([problem]) from None
    out: list[FileRequest] = []
    problems: list[Problem] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            problems.append(Problem(str(p), n, "", f"invalid JSON ({err.msg})"))
            continue
        if not isinstance(row, dict) or not isinstance(row.get("text"), str):
            problems.append(Problem(str(p), n, "text", "each line needs a string `text`"))
            continue
        cls = row.get("task_class", classes[0])
        if cls not in classes:
            problems.append(Problem(str(p), n, "task_class", f"unknown class {cls!r}",
                                    f"classes: {', '.join(classes)}"))  # fmt: skip
            continue
        labels = frozenset(row.get("labels", []))
        bad = sorted(labels - set(LABELS))
        if bad:
            problems.append(Problem(str(p), n, "labels", f"unknown label {bad[0]!r}",
                                    f"labels: {', '.join(LABELS)}"))  # fmt: skip
            continue
        asserts = tuple(row.get("assert", []))
        for a in asserts:
            if not isinstance(a, dict) or a.get("type") not in ASSERTIONS:
                problems.append(Problem(str(p), n, "assert", f"bad assertion {a!r}",
                                        f"types: {', '.join(ASSERTIONS)}"))  # fmt: skip
                break
        out.append(FileRequest(str(row.get("id", n)), row["text"], cls, labels, asserts))
    if problems:
        raise SpecError(problems)
    if not out:
        raise SpecError([Problem(str(p), None, "", "no requests in the file")])
    return out


def judge(request: FileRequest, answer: str) -> bool:
    """Whether `answer` passes every assertion of `request` (no assertions: any answer)."""
    if not request.asserts:
        return bool(answer)
    return all(_passes(a, answer, request) for a in request.asserts)


def _passes(a: Mapping[str, Any], answer: str, request: FileRequest) -> bool:
    kind, value = a["type"], a.get("value")
    if kind == "equals":
        return answer.strip() == str(value).strip()
    if kind == "contains":
        return str(value) in answer
    if kind == "icontains":
        return str(value).lower() in answer.lower()
    if kind == "regex":
        return re.search(str(value), answer) is not None
    if kind == "json_schema":
        import jsonschema

        try:
            jsonschema.validate(json.loads(answer), value or {})
        except (json.JSONDecodeError, jsonschema.ValidationError):
            return False
        return True
    module, func = str(value).split(":")
    return bool(getattr(importlib.import_module(module), func)(answer, request))
