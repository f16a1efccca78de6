"""Loading a suite end to end: file -> overrides -> validation -> cross references.

`load_suite` is the one entry point the CLI and tests use. It returns the frozen
`Suite` together with where every parameter came from (default, suite file or --set),
which the manifest records.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import Problem, SpecError
from harness.spec._load import (
    LineMap,
    apply_overrides,
    load_suite_data,
    locate_key,
    suggest,
    validate,
)
from harness.spec._models import Suite, reference_problems
from harness.spec._policy import Policy


@dataclass(frozen=True)
class LoadedSuite:
    """A validated suite and the provenance of its values."""

    suite: Suite
    path: Path
    data: dict[str, Any]
    """The raw mapping after overrides (what the user wrote), policy file merged in."""
    overrides: dict[tuple[str | int, ...], str]
    """Overridden paths and the override text."""
    policy_data: dict[str, Any] = field(default_factory=dict)
    """What the policy file itself says (empty without a file)."""
    suite_policy: dict[str, Any] = field(default_factory=dict)
    """Policy keys the suite (or --set) writes inline."""
    policy_flag: bool = False
    """The policy file came from `--policy`."""
    lines: LineMap = field(default_factory=dict)
    """Line of every key in the suite file, for problems found after loading."""
    files: dict[tuple[str | int, ...], str] = field(default_factory=dict)
    """Keys written in an included fragment, and that fragment's file."""

    @property
    def suite_hash(self) -> str:
        """sha256 of the resolved suite (defaults filled in), stable across key order and
        across checkouts: file paths are hashed relative to the suite's folder."""
        dump = self.portable()
        dump["policies"].pop("file", None)
        return _sha256(dump)

    def portable(self) -> dict[str, Any]:
        """The suite as JSON data with every file path relative to the suite's folder.

        The loader makes paths absolute so that any process can read the files; records
        (manifests, hashes) hold them as a checkout-independent path instead, so that the
        machine's directory layout never lands in a committed baseline.
        """
        dump = self.suite.model_dump(mode="json")
        base = self.path.parent.resolve()

        def rel(value: Any) -> Any:
            if not isinstance(value, str):
                return value
            try:
                return os.path.relpath(Path(value).resolve(), base)
            except ValueError:  # another drive: nothing shorter to say
                return value

        for key in _PATHS:
            node: Any = dump
            for k in key[:-1]:
                node = node.get(k) if isinstance(node, dict) else None
            if isinstance(node, dict) and key[-1] in node:
                node[key[-1]] = rel(node[key[-1]])
        stack = dump["stack"]
        stack["factory_path"] = [rel(d) for d in stack["factory_path"]]
        return dump

    @property
    def policy_hash(self) -> str:
        """sha256 of the resolved policy (not of where it was read from)."""
        return _sha256(self.suite.policies.model_dump(mode="json", exclude={"file"}))

    def policy(self) -> dict[str, Any]:
        """Name, version, hash and file of the policy in force, for the manifest."""
        pol = self.suite.policies
        return {
            "name": pol.name,
            "version": pol.version,
            "hash": self.policy_hash,
            "file": self.portable()["policies"]["file"],
        }

    def parameters(self) -> dict[str, dict[str, Any]]:
        """Every leaf parameter, dotted, with its value and source.

        Sources: `default`, `suite`, `policy` (the policy file) or `--set`.
        """
        out: dict[str, dict[str, Any]] = {}
        dump = self.portable()
        raw = {**self.data, "policies": self.suite_policy}
        _flatten(dump, (), raw, self.overrides, out)
        for key, entry in out.items():
            in_file = _dig(self.policy_data, key.split(".")[1:]) is not None
            if entry["source"] == "default" and key.startswith("policies.") and in_file:
                entry["source"] = "policy"
        if self.policy_flag:
            out["policies.file"]["source"] = "--policy"
        return out


_PATHS: tuple[tuple[str, ...], ...] = (
    ("traffic", "file"),
    ("traffic", "log", "path"),
    ("world", "outcomes", "path"),
    ("policies", "file"),
)
"""Every file path a suite holds (besides the list `stack.factory_path`)."""


def _sha256(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _dig(node: Any, keys: list[str]) -> Any:
    for k in keys:
        if isinstance(node, dict):
            node = node.get(k)
        elif isinstance(node, list) and k.isdigit() and int(k) < len(node):
            node = node[int(k)]
        else:
            return None
    return node


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` on top of `base`, recursively for mappings (lists are replaced whole)."""
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _flatten(
    value: Any,
    path: tuple[str | int, ...],
    raw: Any,
    overrides: dict[tuple[str | int, ...], str],
    out: dict[str, dict[str, Any]],
) -> None:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            sub = raw.get(k) if isinstance(raw, dict) else None
            _flatten(v, (*path, k), sub, overrides, out)
        return
    if isinstance(value, list) and value and isinstance(value[0], dict):
        for i, v in enumerate(value):
            sub = raw[i] if isinstance(raw, list) and i < len(raw) else None
            _flatten(v, (*path, i), sub, overrides, out)
        return
    if any(path[:j] in overrides for j in range(1, len(path) + 1)):
        source = "--set"
    elif raw is not None:
        source = "suite"
    else:
        source = "default"
    out[".".join(str(p) for p in path)] = {"value": value, "source": source}


def load_suite(
    path: str | Path, overrides: Sequence[str] = (), policy: str | Path | None = None
) -> LoadedSuite:
    """Load, override, validate and cross-check a suite; raise SpecError listing every problem.

    The policy comes from `policy` (a path, e.g. `--policy`), else from the suite's
    `policies.file` (relative to the suite file), else the built-in default; the suite's
    other `policies` keys and `--set policies.*` override it.
    """
    p = Path(path)
    data, lines = load_suite_data(p)
    data, lines, files = _include(p, data, lines)
    data, overridden = apply_overrides(data, overrides, Suite)
    inline = data.get("policies")
    inline = dict(inline) if isinstance(inline, dict) else {}
    ref = inline.pop("file", None)
    policy_file: Path | None = None
    if policy is not None:
        policy_file = Path(policy)
    elif isinstance(ref, str):
        policy_file = p.parent / ref
    policy_data: dict[str, Any] = {}
    if policy_file is not None:
        if not policy_file.exists():  # anything else there is refused by the reader
            key: tuple[str | int, ...] = ("policies", "file")
            where, line = (
                ("--policy", None)
                if policy is not None
                else locate_key(key, file=str(p), lines=lines, overridden=overridden)
            )
            hint = "check the path" if policy is not None else "paths are relative to the suite"
            raise SpecError([Problem(where, line, "policies.file" if policy is None else "",
                                     f"policy file {policy_file} not found", hint)])  # fmt: skip
        policy_data, policy_lines = load_suite_data(policy_file, "policy file")
        validate(policy_data, Policy, file=str(policy_file), lines=policy_lines, quote=False)
        merged = _merge(policy_data, inline)
        merged["file"] = str(policy_file)
        data = {**data, "policies": merged}
        if isinstance(ref, str) and policy is None:
            inline["file"] = ref
    traffic = data.get("traffic")
    if isinstance(traffic, dict) and isinstance(traffic.get("file"), str):
        data = {**data, "traffic": {**traffic, "file": str((p.parent / traffic["file"]).resolve())}}
    for key in (("traffic", "log", "path"), ("world", "outcomes", "path")):
        data = _resolve_path(data, key, p, files)
    stack = data.get("stack")
    if isinstance(stack, dict) and isinstance(stack.get("factory_path", ["."]), list):
        paths = [str((p.parent / d).resolve()) for d in stack.get("factory_path", ["."])]
        data = {**data, "stack": {**stack, "factory_path": paths}}
    suite = validate(data, Suite, file=str(p), lines=lines, overridden=overridden, files=files)
    problems = [
        _problem(str(p), lines, overridden, key, message, options, files)
        for key, message, options in reference_problems(suite)
    ]
    if problems:
        raise SpecError(sorted(problems, key=lambda q: (q.line or 0, q.key)))
    return LoadedSuite(
        suite=suite,
        path=p,
        data=data,
        overrides=overridden,
        policy_data=policy_data,
        suite_policy=inline,
        policy_flag=policy is not None,
        lines=lines,
        files=files,
    )


def _include(
    p: Path, data: dict[str, Any], lines: LineMap
) -> tuple[dict[str, Any], LineMap, dict[tuple[str | int, ...], str]]:
    """Merge the suite's `include` fragments under it: later fragments win, the suite last.

    Returns the merged data, the line of every key, and the file of each key written in
    a fragment (keys the suite writes itself are the suite's).
    """
    refs = data.get("include")
    if refs is None:
        return data, lines, {}
    key: tuple[str | int, ...] = ("include",)
    if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
        raise SpecError([Problem(str(p), lines.get(key), "include",
                                 "expected a list of fragment files",
                                 "write include: [fragment.yaml, ...]")])  # fmt: skip
    merged: dict[str, Any] = {}
    merged_lines: LineMap = {}
    files: dict[tuple[str | int, ...], str] = {}
    for j, ref in enumerate(refs):
        frag = p.parent / ref
        if not frag.exists():  # anything else there is refused by the reader
            raise SpecError([Problem(str(p), lines.get((*key, j), lines.get(key)), f"include.{j}",
                                     f"fragment {frag} not found",
                                     "paths are relative to the suite file")])  # fmt: skip
        frag_data, frag_lines = load_suite_data(frag, "suite fragment")
        if "include" in frag_data:
            raise SpecError([Problem(str(frag), frag_lines.get(key), "include",
                                     "a fragment cannot include other fragments",
                                     "list every fragment in the suite's include")])  # fmt: skip
        frag_data = _relative_paths(frag_data, frag.parent, p.parent)
        _shadow(merged_lines, files, frag_lines, frag_data)
        merged = _merge(merged, frag_data)
        for path, line in frag_lines.items():
            merged_lines[path] = line
            files[path] = str(frag)
    own = {k: v for k, v in data.items() if k != "include"}
    _shadow(merged_lines, files, lines, own)
    merged = _merge(merged, own)
    for path, line in lines.items():
        merged_lines[path] = line
        files.pop(path, None)
    merged["include"] = refs
    return merged, merged_lines, files


def _shadow(
    lines: LineMap, files: dict[tuple[str | int, ...], str], over_lines: LineMap, over: Any
) -> None:
    """Forget the lines of keys that `over` replaces whole (lists and scalars)."""
    for path in list(lines):
        for depth in range(1, len(path) + 1):
            prefix = path[:depth]
            if prefix in over_lines and not isinstance(_dig(over, [str(k) for k in prefix]), dict):
                if prefix != path:
                    del lines[path]
                    files.pop(path, None)
                break


_FRAGMENT_PATHS = (("traffic", "log", "path"), ("world", "outcomes", "path"), ("traffic", "file"))


def _relative_paths(data: dict[str, Any], frag_dir: Path, suite_dir: Path) -> dict[str, Any]:
    """File paths in a fragment are relative to the fragment: rewrite them for the suite."""
    for key in _FRAGMENT_PATHS:
        node: Any = data
        for k in key[:-1]:
            node = node.get(k) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(node.get(key[-1]), str):
            node[key[-1]] = os.path.relpath((frag_dir / node[key[-1]]).resolve(), suite_dir)
    return data


def _resolve_path(
    data: dict[str, Any], key: tuple[str, ...], p: Path, files: Mapping[Any, str]
) -> dict[str, Any]:
    """`data` with the file path at `key` made absolute, relative to the suite file."""
    node: Any = data
    for k in key[:-1]:
        node = node.get(k) if isinstance(node, dict) else None
    if not isinstance(node, dict) or not isinstance(node.get(key[-1]), str):
        return data
    out = copy.deepcopy(data)
    inner: Any = out
    for k in key[:-1]:
        inner = inner[k]
    inner[key[-1]] = str((p.parent / node[key[-1]]).resolve())
    return out


def _problem(
    file: str,
    lines: LineMap,
    overridden: dict[tuple[str | int, ...], str],
    key: tuple[str | int, ...],
    message: str,
    options: list[str],
    files: Mapping[tuple[str | int, ...], str] | None = None,
) -> Problem:
    """A cross-reference problem located like a validation problem, with a did-you-mean."""
    where, line = locate_key(key, file=file, lines=lines, overridden=overridden, files=files)
    bad = message.split("'")[1] if message.count("'") >= 2 else str(key[-1])
    close = suggest(bad, options) if options else None
    if close:
        hint: str | None = f"did you mean {close}?"
    elif options:
        hint = "valid: " + ", ".join(options)
    else:
        hint = None
    return Problem(
        file=where,
        line=line,
        key=".".join(str(k) for k in key),
        message=message,
        hint=hint,
    )
