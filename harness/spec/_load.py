"""Read a suite file, apply ``--set`` overrides, and validate the result into a model.

ruamel.yaml knows where every key is written; pydantic knows what is wrong with it. This
module joins the two so that every error names the file, the line and the dotted key as
the user wrote them (never a pydantic location), says what was expected, and suggests a
fix. It is generic over the model class, so anything loaded from YAML reports errors the
same way.

The pipeline is three pure steps, each usable alone:

    data, lines = load_suite_data(path)                        # YAML -> plain data + lines
    data, sources = apply_overrides(data, overrides, Suite)    # --set key=value
    suite = validate(data, Suite, file=path, lines=lines, overridden=sources)

Each step raises `SpecError` holding every problem it found, not just the first.
"""

from __future__ import annotations

import copy
import datetime as dt
import difflib
import enum
import math
import re
import sys
import types
from collections.abc import Collection, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, Discriminator, Tag, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from ruamel.yaml import YAML
from ruamel.yaml.comments import TaggedScalar
from ruamel.yaml.composer import Composer
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.scalarbool import ScalarBoolean

from harness.errors import Problem, SpecError
from harness.limits import ALIASES, DEPTH, EXPANDED_TEXT, EXPANDED_VALUES, SUITE_BYTES, read_text

__all__ = [
    "OVERRIDE_FILE",
    "KeyPath",
    "LineMap",
    "apply_overrides",
    "load_suite_data",
    "locate_key",
    "suggest",
    "validate",
]

KeyPath = tuple[str | int, ...]
"""A key as a path into the data: mapping keys and list indices, e.g. ``("faults", 0, "kind")``."""

LineMap = dict[KeyPath, int]
"""Where each key (or list item) is written: path -> 1-based line."""

OVERRIDE_FILE = "--set"
"""The `Problem.file` of problems whose value came from a command-line override."""

M = TypeVar("M", bound=BaseModel)

_UNICODE = "write the characters themselves (a surrogate escape only in a valid pair)"
_FINITE = "write a finite number (e.g. 1e9 for a very large one); .inf and .nan are refused"
_OVERRIDE_FORM = "write it as --set path.to.key=value, e.g. --set stack.retries.max_attempts=3"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_INT_TAG = "tag:yaml.org,2002:int"
_INT_DIGITS = sys.get_int_max_str_digits() or 4300


# --------------------------------------------------------------------------- loading


def load_suite_data(path: str | Path, what: str = "suite file") -> tuple[dict[str, Any], LineMap]:
    """Parse a YAML suite into plain dicts, lists and scalars, and note each key's line.

    Plain data (no ruamel types) keeps the rest of the harness independent of the YAML
    library; the line map is what lets `validate` point at the offending line. Duplicate
    keys are an error rather than last-one-wins, because a silently dropped setting is
    the hardest mistake to spot. The file is read within `harness.limits` (a regular file
    up to a size, nesting and aliases bounded, numbers finite); `what` names its role in
    errors (``suite file``, ``policy file``, ``gates file``).
    """
    file = str(path)
    text = read_text(path, limit=SUITE_BYTES, what=what)
    try:
        root = _round_trip().load(text)
    except DuplicateKeyError as exc:
        raise SpecError(_duplicate_keys(text, file) or [_syntax_problem(file, exc)]) from exc
    except MarkedYAMLError as exc:
        raise SpecError([_syntax_problem(file, exc)]) from exc
    except YAMLError as exc:
        raise SpecError([Problem(file, None, "", f"invalid YAML: {exc}")]) from exc
    except _OverLimit as exc:
        raise SpecError([Problem(file, exc.line, "", exc.message, exc.hint)]) from None
    if not isinstance(root, dict):  # said by kind only: the file may be anything (a secret)
        got = "an empty file" if root is None else _kind(root)
        message = f"expected a mapping of {what.split()[0]} keys at the top level, got {got}"
        raise SpecError([Problem(file, 1, "", message, "start the file with `key: value` lines")])
    plain = _Plain(file)
    data = plain.mapping(root, ())
    if plain.problems:
        raise SpecError(plain.problems)
    return data, plain.lines


def _round_trip() -> YAML:
    """A fresh round-trip loader: it keeps line numbers, refuses duplicate keys, and holds
    nesting and aliases within `harness.limits`."""
    loader = YAML(typ="rt")
    loader.allow_duplicate_keys = False
    loader.Composer = _BoundedComposer
    return loader


def _kind(value: object) -> str:
    """What a value is, without quoting it."""
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool) or value is None:
        return "true, false or null"
    return "a number" if isinstance(value, int | float) else "a single value"


class _OverLimit(Exception):
    """A YAML document over one of the limits of `harness.limits`, at a 1-based line."""

    def __init__(self, line: int, message: str, hint: str) -> None:
        super().__init__(message)
        self.line, self.message, self.hint = line, message, hint


class _BoundedComposer(Composer):
    """ruamel's composer, refusing a document nested deeper than `DEPTH`, with more than
    `ALIASES` aliases, or that would hold more than `EXPANDED_VALUES` values or
    `EXPANDED_TEXT` of text once every alias is written out.

    Aliases share one node here, so the check costs one pass over the document as written:
    each node's expanded size is its own plus its children's, measured once when it is
    complete (an alias to a node still open, a recursive alias, counts one). A "billion
    laughs" file is refused in milliseconds instead of expanding to gigabytes later.
    """

    def __init__(self, loader: Any = None) -> None:
        super().__init__(loader=loader)
        self._sizes: dict[int, tuple[int, int]] = {}
        self._aliases = 0
        self._level = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.parser.peek_event()
        line = event.start_mark.line + 1 if event.start_mark is not None else 1
        if isinstance(event, AliasEvent):
            self._aliases += 1
            if self._aliases > ALIASES.value:
                message = f"too many YAML aliases, {ALIASES.exceeded()}"
                raise _OverLimit(line, message, "write the values out")
            return super().compose_node(parent, index)
        self._level += 1
        if self._level > DEPTH.value:
            raise _OverLimit(line, f"nested too deep, {DEPTH.exceeded()}", "flatten the value")
        node = super().compose_node(parent, index)
        self._level -= 1
        self._measure(node, line)
        return node

    def _measure(self, node: Node, line: int) -> None:
        if isinstance(node, ScalarNode):
            size = (1, len(str(node.value)))
            digits = sum(c.isdigit() for c in str(node.value)[: _INT_DIGITS + 10])
            if str(node.tag) == _INT_TAG and digits > _INT_DIGITS:  # int() would refuse it
                raise _OverLimit(line, f"a whole number of more than {_INT_DIGITS} digits",
                                 "write a smaller number")  # fmt: skip
        else:
            children = node.value if isinstance(node, SequenceNode) else [
                child for pair in node.value for child in pair
            ]  # fmt: skip
            sizes = [self._sizes.get(id(child), (1, 0)) for child in children]
            size = (1 + sum(v for v, _ in sizes), sum(t for _, t in sizes))
        self._sizes[id(node)] = size
        if size[0] > EXPANDED_VALUES.value:
            held, limit = f"{size[0]:,} values", EXPANDED_VALUES
        elif size[1] > EXPANDED_TEXT.value:
            held, limit = f"{EXPANDED_TEXT.show(size[1])} of text", EXPANDED_TEXT
        else:
            return
        message = f"this value holds {held} once its aliases are expanded, {limit.exceeded()}"
        raise _OverLimit(line, message, "use fewer aliases: each *name repeats its anchor's value")


def _syntax_problem(file: str, exc: MarkedYAMLError) -> Problem:
    """One line for a YAML syntax error, at the line where the parser gave up."""
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark is not None else None
    what = str(exc.problem or exc.context or "cannot parse")
    message = f"invalid YAML: {what}"
    if exc.problem and exc.context:
        start = exc.context_mark
        where = f" on line {start.line + 1}" if start is not None and start.line + 1 != line else ""
        message += f" ({exc.context}{where})"
    hint = None
    if "'\\t'" in what:
        hint = "indent with spaces; YAML does not allow tabs"
    elif "another document" in what:
        hint = "a suite is one YAML document; remove the `---` line"
    return Problem(file, line, "", message, hint)


def _duplicate_keys(text: str, file: str) -> list[Problem]:
    """Every duplicate key with both its lines (ruamel stops at the first and names the map)."""
    problems: list[Problem] = []
    visited: set[int] = set()

    def walk(node: Node, path: KeyPath) -> None:
        if id(node) in visited:  # aliases share nodes, and may even be recursive
            return
        visited.add(id(node))
        if isinstance(node, MappingNode):
            first: dict[tuple[str, str], int] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, ScalarNode) or str(key_node.tag) == _MERGE_TAG:
                    walk(value_node, path)
                    continue
                child = (*path, str(key_node.value))
                line = key_node.start_mark.line + 1
                ident = (str(key_node.tag), str(key_node.value))
                if ident in first:
                    message = f"duplicate key, first defined on line {first[ident]}"
                    problems.append(Problem(file, line, _dotted(child), message, "keep only one"))
                else:
                    first[ident] = line
                walk(value_node, child)
        elif isinstance(node, SequenceNode):
            for index, item in enumerate(node.value):
                walk(item, (*path, index))

    root = _round_trip().compose(text)
    if root is not None:
        walk(root, ())
    return problems


class _Plain:
    """Turns ruamel's round-trip values into plain Python values, noting each key's line."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.lines: LineMap = {}
        self.problems: list[Problem] = []
        self._open: set[int] = set()  # containers being converted, to catch recursive aliases

    def value(self, node: object, path: KeyPath, line: int | None) -> Any:
        if isinstance(node, Mapping):
            return self.mapping(node, path, line)
        if isinstance(node, list):
            return self.sequence(node, path, line)
        if isinstance(node, bool) or node is None:
            return node
        if isinstance(node, ScalarBoolean):  # an int subclass, so before int
            return bool(node)
        if isinstance(node, int):
            return int(node)
        if isinstance(node, float):
            if not math.isfinite(node):
                written = ".nan" if math.isnan(node) else ("-.inf" if node < 0 else ".inf")
                self._problem(path, line, f"{written} is not a finite number", _FINITE)
                return None
            return float(node)
        if isinstance(node, str):
            bad = _text_problem(node)
            if bad is not None:
                self._problem(path, line, *bad)
                return None
            return str(node)
        if isinstance(node, dt.date):
            return node
        if isinstance(node, TaggedScalar):
            self._problem(path, line, f"unsupported YAML tag {node.tag}", "remove the tag")
        else:
            self._problem(path, line, f"unsupported YAML value ({type(node).__name__})")
        return None

    def mapping(self, node: Mapping[Any, Any], path: KeyPath, line: int | None = None) -> Any:
        if not self._enter(node, path, line):
            return None
        positions = _key_lines(node)
        out: dict[str | int, Any] = {}
        for raw_key, raw_value in node.items():
            key_line = positions.get(raw_key, line)
            key = self._key(raw_key, path, key_line)
            if key is None:
                continue
            child = (*path, key)
            if key_line is not None:
                self.lines[child] = key_line
            out[key] = self.value(raw_value, child, key_line)
        self._open.discard(id(node))
        return out

    def sequence(self, node: list[Any], path: KeyPath, line: int | None) -> Any:
        if not self._enter(node, path, line):
            return None
        positions = _key_lines(node)
        out = []
        for index, item in enumerate(node):
            item_line = positions.get(index, line)
            if item_line is not None:
                self.lines[(*path, index)] = item_line
            out.append(self.value(item, (*path, index), item_line))
        self._open.discard(id(node))
        return out

    def _enter(self, node: object, path: KeyPath, line: int | None) -> bool:
        if id(node) in self._open:
            self._problem(path, line, "recursive YAML alias", "an alias cannot contain itself")
            return False
        self._open.add(id(node))
        return True

    def _key(self, key: object, path: KeyPath, line: int | None) -> str | int | None:
        if isinstance(key, str) and (bad := _text_problem(key)) is not None:
            self._problem(path, line, f"invalid key: {bad[0]}", bad[1])
            return None
        if isinstance(key, str):
            return str(key)
        if isinstance(key, int) and not isinstance(key, bool):
            return int(key)
        where = (*path, str(key))
        self._problem(where, line, "keys must be text or whole numbers", "quote the key")
        return None

    def _problem(
        self, path: KeyPath, line: int | None, message: str, hint: str | None = None
    ) -> None:
        self.problems.append(Problem(self.file, line, _dotted(path), message, hint))


def _key_lines(node: object) -> dict[Any, int]:
    """1-based lines of a ruamel container's keys or items (merged keys have none)."""
    positions = getattr(getattr(node, "lc", None), "data", None) or {}
    return {key: place[0] + 1 for key, place in positions.items()}


# ------------------------------------------------------------------------- overrides


def apply_overrides(
    data: Mapping[str, Any], overrides: Sequence[str], model_cls: type[BaseModel]
) -> tuple[dict[str, Any], dict[KeyPath, str]]:
    """Apply ``--set path.to.key=value`` overrides to a copy of `data`, in order.

    The value is read as a YAML flow value (``3``, ``0.5``, ``true``, ``null``, ``[1, 2]``,
    ``{a: 1}``); anything else stays text, and so does any value written for a text field
    (``name=007`` is ``"007"``). An empty value is the empty string. Integer segments index
    lists (``faults.0.probability``; the index one past the end appends), and missing
    intermediate mappings are created. Keys are not checked here: `validate` reports
    unknown ones with a suggestion, against ``--set``.

    Returns the new data and, for each overridden path, the override text, so callers can
    record where each value came from.
    """
    result: dict[str, Any] = copy.deepcopy(dict(data))
    sources: dict[KeyPath, str] = {}
    problems: list[Problem] = []
    for text in overrides:
        try:
            path = _apply_one(result, text, model_cls)
        except SpecError as exc:
            problems.extend(exc.problems)
            continue
        sources[path] = text
    if problems:
        raise SpecError(problems)
    return result, sources


def _set_problem(key: str, message: str, hint: str | None = None) -> SpecError:
    return SpecError([Problem(OVERRIDE_FILE, None, key, message, hint)])


def _split_override(text: str) -> tuple[list[str], str]:
    key, equals, value = text.partition("=")
    key = key.strip()
    if not _encodable(text):  # bytes that are not UTF-8 reach argv as lone surrogates
        raise _set_problem(key if _encodable(key) else "", "not UTF-8 text", _UNICODE)
    if not equals or not key:
        raise _set_problem(key, f"expected key=value, got {text!r}", _OVERRIDE_FORM)
    segments = [segment.strip() for segment in key.split(".")]
    if not all(segments):
        raise _set_problem(key, "empty part in the key", _OVERRIDE_FORM)
    return segments, value


def _apply_one(data: dict[str, Any], text: str, model_cls: type[BaseModel]) -> KeyPath:
    segments, raw = _split_override(text)
    node: Any = data
    slot: _Slot | None = _resolve(model_cls)
    path: list[str | int] = []
    for position, segment in enumerate(segments):
        slot = _member_for_data(slot, node)
        key = _key_in(node, segment, slot, path)
        slot = _child(slot, key)
        path.append(key)
        if position == len(segments) - 1:
            _put(node, key, _parse_value(raw, slot, _dotted(path)))
            break
        child = _get(node, key)
        if child is None:
            upcoming = segments[position + 1]
            child = [] if _is_index(upcoming) and _is_sequence(slot) else {}
            _put(node, key, child)
        elif not isinstance(child, dict | list):
            message = f"cannot set a key inside {_dotted(path)}: it is {_show(child)}"
            raise _set_problem(
                _dotted(segments), message, f"set it whole: --set {_dotted(path)}=..."
            )
        node = child
    return tuple(path)


def _is_index(segment: str) -> bool:
    return segment.isascii() and segment.isdigit()


def _key_in(
    node: dict[Any, Any] | list[Any], segment: str, slot: _Slot | None, path: list[str | int]
) -> str | int:
    """The key `segment` means in `node`: a list index, an existing key, or a new key."""
    if isinstance(node, list):
        if not _is_index(segment):
            message = f"{_dotted(path)} is a list; expected an item number, got {segment!r}"
            raise _set_problem(_dotted((*path, segment)), message, f"use {_dotted(path)}.0, ...")
        index = int(segment)
        if index > len(node):
            message = f"item {index} is out of range: {_dotted(path)} has {len(node)} item(s)"
            hint = f"use 0 to {len(node)} ({len(node)} adds an item)"
            raise _set_problem(_dotted((*path, segment)), message, hint)
        return index
    if segment in node or not _is_index(segment):
        return segment
    wants_int = slot is not None and _mapping_key_type(slot) is int
    return int(segment) if int(segment) in node or wants_int else segment


def _get(node: Any, key: str | int) -> Any:
    if isinstance(node, dict):
        return node.get(key)
    if isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
        return node[key]
    return None


def _put(node: dict[Any, Any] | list[Any], key: str | int, value: Any) -> None:
    if isinstance(node, list) and isinstance(key, int):
        if key == len(node):
            node.append(value)
        else:
            node[key] = value
    elif isinstance(node, dict):
        node[key] = value


def _parse_value(raw: str, slot: _Slot | None, key: str) -> Any:
    """Read an override's value as YAML, keeping text where text was meant."""
    text = raw.strip()
    if not text:
        return ""
    flow = text[0] in "[{"
    loader = YAML(typ="safe", pure=True)
    loader.Composer = _BoundedComposer
    try:
        value = loader.load(text)
    except YAMLError as exc:
        if not flow:
            return text
        problem = getattr(exc, "problem", None) or "cannot parse"
        hint = "quote text that starts with [ or {, e.g. key='[draft]'"
        raise _set_problem(key, f"invalid YAML value {text!r}: {problem}", hint) from exc
    except _OverLimit as exc:
        raise _set_problem(key, exc.message, exc.hint) from None
    if isinstance(value, dict | list) and not flow:
        return text  # `a: b` or `- x` typed on a command line is text, not a block
    bad = _bad_scalar(value)
    if bad is not None:
        raise _set_problem(key, f"{_show(text)} {bad[0]}", bad[1])
    if value is not None and not isinstance(value, str | dict | list) and _wants_text(slot):
        return text
    return value


def _bad_scalar(value: Any) -> tuple[str, str] | None:
    """What is wrong with a parsed value (bounded by the loader) and the fix, or None: a
    number that is not finite, or unusable text (a lone surrogate escape, a NUL)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "holds a number that is not finite", _FINITE
    if isinstance(value, str) and (bad := _text_problem(value)) is not None:
        return f"holds {bad[0]}", bad[1]
    if isinstance(value, dict):
        items = [*value.keys(), *value.values()]
        return next((bad for v in items if (bad := _bad_scalar(v)) is not None), None)
    if isinstance(value, list):
        return next((bad for v in value if (bad := _bad_scalar(v)) is not None), None)
    return None


def _text_problem(text: str) -> tuple[str, str] | None:
    """Why `text` cannot be used (as a name, a path, anything) and the fix, or None."""
    if not _encodable(text):
        return "text with a lone surrogate escape (e.g. \\ud800)", _UNICODE
    if "\x00" in text:
        return "text with a NUL character (\\0)", "remove it"
    return None


def _encodable(text: str) -> bool:
    """Whether `text` is valid Unicode (a YAML or JSON escape can make a lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# --------------------------------------------------------------------------- schema


@dataclass(frozen=True)
class _Slot:
    """A type from the model, with Annotated and Optional stripped.

    A union of two or more types keeps its members, and its discriminator field if it is
    tagged by one.
    """

    tp: Any
    members: tuple[Any, ...] = ()
    discriminator: str | None = None


def _resolve(tp: Any, discriminator: str | None = None) -> _Slot:
    while True:
        if get_origin(tp) is Annotated:
            tp, *metadata = get_args(tp)
            discriminator = next(filter(None, map(_discriminator_of, metadata)), discriminator)
        elif get_origin(tp) in (Union, types.UnionType):
            members = tuple(arg for arg in get_args(tp) if arg is not type(None))
            if len(members) != 1:
                return _Slot(tp, members, discriminator)
            tp = members[0]
        else:
            return _Slot(tp, (), discriminator)


def _discriminator_of(metadata: object) -> str | None:
    found = metadata.discriminator if isinstance(metadata, FieldInfo | Discriminator) else None
    if isinstance(found, Discriminator):
        found = found.discriminator
    return found if isinstance(found, str) else None


def _is_model(tp: object) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _field_keys(model: type[BaseModel]) -> dict[str, FieldInfo]:
    """The model's fields by the key a user writes: the alias if one is set, else the name."""
    keys: dict[str, FieldInfo] = {}
    for name, info in model.model_fields.items():
        alias = info.validation_alias if isinstance(info.validation_alias, str) else info.alias
        keys[alias or name] = info
    return keys


def _field(model: type[BaseModel], key: object) -> FieldInfo | None:
    if not isinstance(key, str):
        return None
    return _field_keys(model).get(key) or model.model_fields.get(key)


def _child(slot: _Slot | None, key: str | int) -> _Slot | None:
    """The type of `key` inside a value of type `slot`; None when the model does not say."""
    if slot is None or slot.members:
        return None
    if _is_model(slot.tp):
        info = _field(slot.tp, key)
        return _resolve(info.annotation, _discriminator_of(info)) if info else None
    origin, args = get_origin(slot.tp), get_args(slot.tp)
    if not isinstance(origin, type) or not args:
        return None
    if issubclass(origin, Mapping):
        return _resolve(args[-1])
    if issubclass(origin, tuple):
        if len(args) == 2 and args[1] is Ellipsis:
            return _resolve(args[0])
        return _resolve(args[key]) if isinstance(key, int) and key < len(args) else None
    if issubclass(origin, Sequence | AbstractSet):
        return _resolve(args[0])
    return None


def _is_sequence(slot: _Slot | None) -> bool:
    origin = get_origin(slot.tp) if slot is not None and not slot.members else None
    return isinstance(origin, type) and issubclass(origin, Sequence | AbstractSet)


def _mapping_key_type(slot: _Slot) -> object:
    origin, args = get_origin(slot.tp), get_args(slot.tp)
    return args[0] if isinstance(origin, type) and issubclass(origin, Mapping) and args else None


def _literal_values(slot: _Slot | None) -> list[Any]:
    if slot is None or slot.members:
        return []
    if get_origin(slot.tp) is Literal:
        return list(get_args(slot.tp))
    if isinstance(slot.tp, type) and issubclass(slot.tp, enum.Enum):
        return [member.value for member in slot.tp]
    return []


def _wants_text(slot: _Slot | None) -> bool:
    if slot is None or slot.members:
        return False
    values = _literal_values(slot)
    return slot.tp is str or (bool(values) and all(isinstance(v, str) for v in values))


def _member_labels(member: Any, discriminator: str | None) -> set[str]:
    """How pydantic names a union member in an error location: its tag or its class name."""
    if get_origin(member) is Annotated:
        member, *metadata = get_args(member)
        tags = {item.tag for item in metadata if isinstance(item, Tag)}
        if tags:
            return tags
    if not _is_model(member):
        return set()
    if discriminator is None:
        return {member.__name__}
    info = _field(member, discriminator)
    values = _literal_values(_resolve(info.annotation)) if info else []
    return {str(v.value if isinstance(v, enum.Enum) else v) for v in values}


def _model_of(member: Any) -> type[BaseModel] | None:
    tp = _resolve(member).tp
    return tp if _is_model(tp) else None


def _keys_matched(member: Any, node: object) -> int:
    """How many of the data's keys `member` knows: the measure of which member was meant."""
    model = _model_of(member)
    if model is None or not isinstance(node, dict):
        return 0
    return len(node.keys() & _field_keys(model).keys())


def _member_for_data(slot: _Slot | None, node: object) -> _Slot | None:
    """For a union, the member the data is meant for (by tag, else by keys); else `slot`."""
    if slot is None or not slot.members:
        return slot
    if slot.discriminator and isinstance(node, dict) and slot.discriminator in node:
        tag = str(node[slot.discriminator])
        for member in slot.members:
            if tag in _member_labels(member, slot.discriminator):
                return _resolve(member)
    best = max(slot.members, key=lambda member: _keys_matched(member, node))
    return _resolve(best) if _keys_matched(best, node) else None


# ------------------------------------------------------------------------ validation


def validate(
    data: Mapping[str, Any],
    model_cls: type[M],
    *,
    file: str,
    lines: LineMap,
    overridden: Collection[KeyPath] = (),
    files: Mapping[KeyPath, str] | None = None,
    quote: bool = True,
) -> M:
    """Validate `data` into `model_cls`, or raise `SpecError` with one problem per mistake.

    Each problem names the dotted key as written in YAML, its line in `file` (or the line
    of the nearest parent that is written, when the key is missing), and a short message
    and hint. Values that came from an override (a path in `overridden`, or below one)
    are reported against ``--set`` with no line. Problems are sorted by line. Without
    `quote`, a bad value is described by its kind (``got text``), never repeated: for a
    file the suite names, which may be anything (a key file, /etc/passwd).
    """
    try:
        return model_cls.model_validate(data)
    except ValidationError as exc:
        problems = _problems(exc, data, model_cls, file, lines, overridden, files, quote)
        raise SpecError(problems) from exc


class _Unquoted:
    """A value an error may describe but not repeat."""

    def __init__(self, value: object) -> None:
        self.kind = _kind(value) if not isinstance(value, Mapping) else "a mapping"


@dataclass
class _Located:
    """A pydantic error location translated into the user's data path."""

    path: KeyPath
    owner: type[BaseModel] | None  # the model whose field the last key is, if any
    slot: _Slot | None  # the type expected at `path`, if known
    choices: list[tuple[tuple[Any, ...], str, int]] = field(default_factory=list)
    # ^ each union passed on the way: (location up to it, member label, data keys matched)
    dict_key: bool = False  # the error is about the mapping key itself, not its value


def _locate(model_cls: type[BaseModel], data: object, loc: tuple[str | int, ...]) -> _Located:
    """Follow `loc` through the model and the data, dropping union labels and ``[key]``."""
    slot: _Slot | None = _resolve(model_cls)
    node: Any = data
    path: list[str | int] = []
    owner: type[BaseModel] | None = None
    located = _Located((), None, None)
    index = 0
    while index < len(loc):
        item = loc[index]
        if slot is not None and slot.members:  # pydantic names the union member here
            label = str(item)
            member = next(
                (m for m in slot.members if label in _member_labels(m, slot.discriminator)), None
            )
            located.choices.append((loc[:index], label, _keys_matched(member, node)))
            slot = _resolve(member) if member is not None else None
            index += 1
            continue
        if slot is not None and _is_model(slot.tp):
            owner, slot = slot.tp, _child(slot, item)
        elif (child := _child(slot, item)) is not None:
            owner, slot = None, child
        elif _addresses(node, item) or index == len(loc) - 1:  # type unknown: follow the data
            owner, slot = None, None
        else:
            index += 1  # a label of a union member the model could not name
            continue
        path.append(item)
        node = _get(node, item)
        if loc[index + 1 : index + 2] == ("[key]",):
            located.dict_key = True
            index += 1
        index += 1
    located.path, located.owner, located.slot = tuple(path), owner, slot
    return located


def _addresses(node: object, item: str | int) -> bool:
    if isinstance(node, dict):
        return item in node
    return isinstance(node, list) and isinstance(item, int) and 0 <= item < len(node)


def _problems(
    exc: ValidationError,
    data: object,
    model_cls: type[BaseModel],
    file: str,
    lines: LineMap,
    overridden: Collection[KeyPath],
    files: Mapping[KeyPath, str] | None = None,
    quote: bool = True,
) -> list[Problem]:
    errors = exc.errors(include_url=False)
    if not quote:
        errors = [{**e, "input": _Unquoted(e.get("input"))} for e in errors]
    located = [_locate(model_cls, data, tuple(error["loc"])) for error in errors]
    problems = [
        _problem(errors[i], located[i], file, lines, overridden, files)
        for i in _meant_members(errors, located)
    ]
    problems = list(dict.fromkeys(problems)) or [Problem(file, None, "", str(exc))]
    return sorted(problems, key=lambda p: (p.line is None, p.line or 0))


def _meant_members(errors: list[ErrorDetails], located: list[_Located]) -> list[int]:
    """Indices of the errors to report: for each plain union, only the member meant.

    pydantic reports a failed union once per member; the user meant one of them. Prefer
    the member whose errors lie inside the value (its shape fit), then the one that knows
    most of the data's keys, then the one with fewest errors, then the first declared.
    """
    alive = list(range(len(errors)))
    unions = sorted({choice[0] for where in located for choice in where.choices}, key=len)
    for union in unions:
        by_label: dict[str, list[int]] = {}
        matched: dict[str, int] = {}
        for i in alive:
            for at, label, keys in located[i].choices:
                if at == union:
                    by_label.setdefault(label, []).append(i)
                    matched[label] = keys
        if len(by_label) < 2:
            continue

        scores = {
            label: (
                any(len(errors[i]["loc"]) > len(union) + 1 for i in chosen),
                matched[label],
                -len(chosen),
                -chosen[0],
            )
            for label, chosen in by_label.items()
        }
        best = max(scores, key=scores.__getitem__)
        dropped = {i for label, chosen in by_label.items() if label != best for i in chosen}
        alive = [i for i in alive if i not in dropped]
    return alive


def _problem(
    error: ErrorDetails,
    where: _Located,
    file: str,
    lines: LineMap,
    overridden: Collection[KeyPath],
    files: Mapping[KeyPath, str] | None = None,
) -> Problem:
    path = where.path
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        tag_key = _unquote(str((error.get("ctx") or {}).get("discriminator", "")))
        path = (*path, tag_key) if tag_key else path
    message, hint = _describe(error, where, path)
    source, line = locate_key(path, file=file, lines=lines, overridden=overridden, files=files)
    return Problem(source, line, _dotted(path), message, hint)


def locate_key(
    path: KeyPath,
    *,
    file: str,
    lines: LineMap,
    overridden: Collection[KeyPath] = (),
    files: Mapping[KeyPath, str] | None = None,
) -> tuple[str, int | None]:
    """Where a problem at `path` should point: ``(file, line)``, or ``("--set", None)``.

    The line is that of `path`, or of its nearest written parent when `path` itself is
    missing. `files` names the file of keys written in another file than `file` (an
    included fragment). Public so that later checks (e.g. cross references) place their
    problems exactly as validation does.
    """
    if _from_override(path, overridden, lines):
        return OVERRIDE_FILE, None
    depth = _written_depth(path, lines)
    if files and depth and path[:depth] in files:
        return files[path[:depth]], lines[path[:depth]]
    return file, _line_of(path, lines)


def _from_override(path: KeyPath, overridden: Collection[KeyPath], lines: LineMap) -> bool:
    """Whether the value at `path` came from ``--set`` rather than the file.

    True when an override set `path` or a parent of it, or when an override explains
    more of the path than the file does (a key typed only on the command line).
    """
    written = _written_depth(path, lines)
    for source in overridden:
        common = _common_length(source, path)
        if common == len(source) or common > written:
            return True
    return False


def _common_length(a: KeyPath, b: KeyPath) -> int:
    for n, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return n
    return min(len(a), len(b))


def _written_depth(path: KeyPath, lines: LineMap) -> int:
    return next((n for n in range(len(path), 0, -1) if path[:n] in lines), 0)


def _line_of(path: KeyPath, lines: LineMap) -> int | None:
    depth = _written_depth(path, lines)
    return lines[path[:depth]] if depth else None


_EXPECTED = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "decimal_type": "a number",
    "decimal_parsing": "a number",
    "finite_number": "a finite number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "dataclass_type": "a mapping",
    "list_type": "a list",
    "tuple_type": "a list",
    "set_type": "a list",
    "frozen_set_type": "a list",
    "date_type": "a date (YYYY-MM-DD)",
    "date_parsing": "a date (YYYY-MM-DD)",
    "date_from_datetime_parsing": "a date (YYYY-MM-DD)",
    "datetime_type": "a date and time",
    "datetime_parsing": "a date and time",
    "datetime_from_date_parsing": "a date and time",
    "timedelta_type": "a duration",
    "timedelta_parsing": "a duration",
    "none_required": "null",
}

_BOUNDS = {
    "greater_than": ("gt", ">"),
    "greater_than_equal": ("ge", ">="),
    "less_than": ("lt", "<"),
    "less_than_equal": ("le", "<="),
}

_LENGTHS = {
    "too_short": ("min_length", "at least", "item"),
    "too_long": ("max_length", "at most", "item"),
    "string_too_short": ("min_length", "at least", "character"),
    "string_too_long": ("max_length", "at most", "character"),
}


def _describe(error: ErrorDetails, where: _Located, path: KeyPath) -> tuple[str, str | None]:
    """A short message saying what was expected, and a hint to fix it."""
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    last = str(path[-1]) if path else ""
    message: str
    hint: str | None = None
    if kind == "extra_forbidden":
        message, hint = "unknown key", _key_hint(last, where.owner)
    elif kind in ("missing", "union_tag_not_found"):
        message, hint = "required key missing", f"add `{last}: ...`"
    elif kind in ("literal_error", "enum", "union_tag_invalid"):
        if kind == "union_tag_invalid":
            value, allowed = ctx.get("tag"), _quoted(str(ctx.get("expected_tags", "")))
        else:
            allowed = _literal_values(where.slot) or _quoted(str(ctx.get("expected", "")))
        if allowed:
            listed = ", ".join(_show(v) for v in allowed)
            message = f"expected one of {listed}, got {_show(value)}"
            hint = _value_hint(value, allowed)
        else:
            message = f"expected {ctx.get('expected', 'an allowed value')}, got {_show(value)}"
    elif kind in _BOUNDS:
        bound, sign = _BOUNDS[kind]
        message = f"must be {sign} {_show(ctx.get(bound))}"
    elif kind in _LENGTHS:
        bound, side, unit = _LENGTHS[kind]
        count = ctx.get(bound)
        message = f"must have {side} {count} {unit}{'' if count == 1 else 's'}"
    elif kind == "multiple_of":
        message = f"must be a multiple of {_show(ctx.get('multiple_of'))}"
    elif kind == "string_pattern_mismatch":
        message = f"must match the pattern {ctx.get('pattern')}"
    elif kind in _EXPECTED:
        message = f"expected {_EXPECTED[kind]}, got {_show(value)}"
        hint = _FINITE if kind == "finite_number" else None
    else:
        text = error["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        message = text[:1].lower() + text[1:]
    if where.dict_key:
        message = f"invalid key: {message}"
    return message, hint


def _key_hint(key: str, owner: type[BaseModel] | None) -> str | None:
    if owner is None:
        return None
    valid = list(_field_keys(owner))
    match = suggest(key, valid)
    if match is not None:
        return f"did you mean {match}?"
    return f"valid keys: {', '.join(valid)}" if valid else "no keys are allowed here"


def _value_hint(value: object, allowed: Sequence[Any]) -> str | None:
    if not isinstance(value, str):
        return None
    by_text = {str(option): option for option in allowed}
    match = suggest(value, by_text)
    return f"did you mean {_show(by_text[match])}?" if match is not None else None


def suggest(word: str, options: Iterable[str]) -> str | None:
    """The option closest to `word` (ignoring case), or None if none is close.

    Shared by every "did you mean ...?" hint, so suggestions behave the same everywhere.
    """
    by_folded: dict[str, str] = {}
    for option in options:
        by_folded.setdefault(option.casefold(), option)
    matches = difflib.get_close_matches(word.casefold(), list(by_folded), n=1, cutoff=0.6)
    return by_folded[matches[0]] if matches else None


def _quoted(text: str) -> list[str]:
    """The quoted items in a pydantic list such as ``'a', 'b' or 'c'``."""
    return re.findall(r"'([^']*)'", text)


def _unquote(text: str) -> str | None:
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] == "'" else None


def _show(value: object) -> str:
    """A value as the user would write it in YAML, short enough for one line."""
    if isinstance(value, _Unquoted):
        return value.kind
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:37] + "...")
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple | AbstractSet):
        return "a list"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, enum.Enum):
        return _show(value.value)
    return str(value)


def _dotted(path: Iterable[str | int]) -> str:
    return ".".join(str(part) for part in path)
