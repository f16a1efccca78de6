"""Everything a run will use, checked before it starts and without calling any model.

`evalx validate` runs `preflight` so that a suite it passes does not fail `run` on its
input; `run` and `record` run it first, so that a bad requests file or factory fails
before the first (possibly paid) call rather than halfway. It reads the files the suite
names (requests file, request log, outcome table), builds the stack (importing and calling
`stack.factory`), imports tool functions and python assertions, and checks that a live
suite can reach its endpoints (every model has one; with `keys`, every key is set).

`user_code` lists what would import or run code from outside evalx; `safe=True` (the
CLI's `--safe`) refuses a suite that has any, before touching it.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.errors import Problem, SpecError

if TYPE_CHECKING:
    from harness.spec._load import KeyPath
    from harness.spec._suite import LoadedSuite

__all__ = ["Checked", "preflight", "user_code"]


@dataclass(frozen=True)
class Checked:
    """What the checks learned on the way."""

    requests: int
    """Requests the run will have (a requests file's or log's rows, else traffic.requests)."""


def user_code(loaded: LoadedSuite) -> list[tuple[KeyPath, str]]:
    """Where the suite would import or run user code: (key, what would run).

    Factories and tool functions are imported and called; a requests file's python
    assertions are imported and called on every answer. Reading this list runs nothing.
    """
    from harness.requests_file import python_assertions

    s = loaded.suite
    out: list[tuple[KeyPath, str]] = []
    if s.stack.factory is not None:
        out.append((("stack", "factory"), f"imports and calls {s.stack.factory}"))
    for name, tool in s.tools.items():
        if tool.function is not None:
            out.append((("tools", name, "function"), f"imports and calls {tool.function}"))
    if s.traffic.file is not None:
        for line, ref in python_assertions(s.traffic.file):
            out.append((("traffic", "file"), f"line {line} of the requests file imports and "
                        f"calls the python assertion {ref}"))  # fmt: skip
    return out


def preflight(
    loaded: LoadedSuite,
    *,
    safe: bool = False,
    full: bool = True,
    live: bool = False,
    keys: bool = False,
) -> Checked:
    """Check what the run will use; raise `SpecError` (every problem) or another
    `EvalxError` naming the first problem. Calls no model and writes nothing.

    `safe` refuses user code instead of importing it. Without `full`, the data files are
    not read and the stack not built: `run` and `record` do both themselves before their
    first call (and a factory should be called once); a `live` run (endpoints or
    cassettes) still has its requests file checked and its assertions imported here, and
    with `keys` (calls to real endpoints, not a replay) every `api_key_env` must be set.
    """
    if safe:
        code = user_code(loaded)
        if code:
            hint = ("--safe refuses suites that import or run code; review that code, then "
                    "run without --safe in an isolated job")  # fmt: skip
            problems = [_located(loaded, key, f"would run user code: {what}", hint)
                        for key, what in code]  # fmt: skip
            raise SpecError(sorted(problems, key=lambda p: (p.line is None, p.line or 0)))
    s = loaded.suite
    n = s.traffic.requests
    if not full:
        if live and s.traffic.file is not None:
            from harness.requests_file import load

            n = len(load(s.traffic.file, tuple(s.traffic.mix), code=not safe))
        _live(loaded, keys)
        return Checked(requests=n)
    if s.traffic.file is not None:
        from harness.requests_file import load

        n = len(load(s.traffic.file, tuple(s.traffic.mix), code=not safe))
    if s.traffic.log is not None or s.world.outcomes is not None:
        from harness.traffic import sample_requests
        from harness.world import outcome_rows

        reqs = sample_requests(s)
        n = len(reqs)
        outcome_rows(s, reqs)
    if not safe:
        from harness.stack import make_stack

        make_stack(s)
        _import_tools(loaded)
    _live(loaded, keys)
    return Checked(requests=n)


def _import_tools(loaded: LoadedSuite) -> None:
    """Import each tool function (without calling it): a live run calls them by name."""
    problems: list[Problem] = []
    for name, tool in loaded.suite.tools.items():
        if tool.function is None:
            continue
        module_name, func = tool.function.split(":")
        key: KeyPath = ("tools", name, "function")
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            problems.append(_located(loaded, key, f"cannot import {module_name!r} ({err})",
                                     "install the module or put it on PYTHONPATH"))  # fmt: skip
            continue
        except Exception as err:  # the user's module failing as it loads
            message = f"importing {module_name!r} raised {type(err).__name__}: {err}"
            problems.append(_located(loaded, key, message))
            continue
        if not callable(getattr(module, func, None)):
            problems.append(_located(loaded, key, f"{module_name!r} has no function {func!r}"))
    if problems:
        raise SpecError(problems)


def _live(loaded: LoadedSuite, keys: bool) -> None:
    """A suite with any real endpoint runs live: every model needs one (and a key to call)."""
    models = loaded.suite.models
    if all(m.provider == "sim" for m in models.values()):
        return
    problems: list[Problem] = []
    for name, m in models.items():
        if m.provider == "sim":
            message = "a suite with a real endpoint runs live: every model needs one"
            hint = "set provider: openai (or anthropic) and a base_url"
            problems.append(_located(loaded, ("models", name, "provider"), message, hint))
        elif not m.base_url:
            hint = "e.g. base_url: http://127.0.0.1:8000/v1"
            message = f"provider {m.provider} needs a base_url"
            problems.append(_located(loaded, ("models", name, "base_url"), message, hint))
        elif keys and m.api_key_env and os.environ.get(m.api_key_env) is None:
            message = f"${m.api_key_env} is not set"
            hint = f"export {m.api_key_env}=... before calling the endpoint"
            problems.append(_located(loaded, ("models", name, "api_key_env"), message, hint))
    if problems:
        raise SpecError(problems)


def _located(loaded: LoadedSuite, key: KeyPath, message: str, hint: str | None = None) -> Problem:
    from harness.spec._load import locate_key

    where, line = locate_key(key, file=str(loaded.path), lines=loaded.lines,
                             overridden=loaded.overrides, files=loaded.files)  # fmt: skip
    return Problem(where, line, ".".join(map(str, key)), message, hint)
