"""Bounds on everything evalx reads from a user: file size, nesting, YAML aliases.

Every input file (suites and their fragments, policies, gates and grid files, requests
files, request logs, outcome tables, call exports) is read with `read_input`: only a
regular file, and only up to a named limit. A FIFO, a device, a directory or a huge file
fails at once with exit 2, naming the limit and how to raise it, instead of hanging or
exhausting memory. Parsed data is bounded too: `check_depth` caps nesting (deeper data
would end in a RecursionError), and the YAML loader (harness.spec._load) caps aliases and
what they expand to (a 500-byte "billion laughs" file would otherwise grow to gigabytes).

Each limit can be raised for one run through its environment variable; the defaults are
far above anything a hand-written or fitted suite needs.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from harness.errors import InputError, Problem

__all__ = [
    "ALIASES",
    "DATA_BYTES",
    "DEPTH",
    "EXPANDED_TEXT",
    "EXPANDED_VALUES",
    "LIMITS",
    "REQUESTS_FILE_BYTES",
    "SUITE_BYTES",
    "Limit",
    "check_depth",
    "check_input",
    "read_input",
    "read_text",
]

_MIB = 1 << 20


@dataclass(frozen=True)
class Limit:
    """One named bound; `value` reads its environment variable, else the default."""

    name: str
    """What is bounded, as errors say it: e.g. ``size of a suite file``."""
    default: int
    env: str
    """Environment variable that raises (or lowers) the limit, a positive whole number."""
    unit: str = ""
    """``bytes`` prints as KiB/MiB/GiB; anything else follows the number."""

    @property
    def value(self) -> int:
        """The limit in force."""
        raw = os.environ.get(self.env, "").strip()
        if raw.isdigit() and int(raw) > 0:
            return int(raw)
        return self.default

    def show(self, amount: int | None = None) -> str:
        """`amount` (default: the limit) in this limit's unit, e.g. ``16 MiB``."""
        n = self.value if amount is None else amount
        if self.unit != "bytes":
            return f"{n:,}{' ' + self.unit if self.unit else ''}"
        for unit, size in (("GiB", 1 << 30), ("MiB", _MIB), ("KiB", 1 << 10)):
            if n >= size:
                return f"{n / size:.3g} {unit}"
        return f"{n} bytes"

    def exceeded(self) -> str:
        """The tail of every message about this limit: the limit and how to change it."""
        return f"over the limit of {self.show()} ({self.env} raises it)"


SUITE_BYTES = Limit("size of a suite, fragment, policy, gates or grid file", 16 * _MIB,
                    "EVALX_MAX_SUITE_BYTES", "bytes")  # fmt: skip
REQUESTS_FILE_BYTES = Limit("size of a requests file", 256 * _MIB,
                            "EVALX_MAX_REQUESTS_FILE_BYTES", "bytes")  # fmt: skip
DATA_BYTES = Limit("size of a log, outcome table, call export or cassette", 4 << 30,
                   "EVALX_MAX_DATA_BYTES", "bytes")  # fmt: skip
DEPTH = Limit("nesting depth of YAML and JSON values", 64, "EVALX_MAX_DEPTH", "levels")
ALIASES = Limit("YAML aliases in one file", 10_000, "EVALX_MAX_YAML_ALIASES")
EXPANDED_VALUES = Limit("values in one YAML file, aliases expanded", 100_000,
                        "EVALX_MAX_YAML_VALUES", "values")  # fmt: skip
EXPANDED_TEXT = Limit("text in one YAML file, aliases expanded", 32 * _MIB,
                      "EVALX_MAX_YAML_TEXT", "bytes")  # fmt: skip

LIMITS = (SUITE_BYTES, REQUESTS_FILE_BYTES, DATA_BYTES, DEPTH, ALIASES, EXPANDED_VALUES,
          EXPANDED_TEXT)  # fmt: skip
"""Every limit, in the order of the README's table."""

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "a special file")


def check_input(path: str | os.PathLike[str], *, limit: Limit, what: str) -> int:
    """Raise `InputError` unless `path` is a regular file within `limit`; return the limit.

    Only looks (stat): for files another library reads, e.g. a cassette.
    """
    name = os.fspath(path)

    def fail(message: str, hint: str | None = None) -> InputError:
        return InputError(Problem(name, None, "", message, hint))

    try:
        info = os.stat(name)
    except FileNotFoundError:
        raise fail("file not found", "check the path and the directory") from None
    except OSError as exc:
        raise fail(f"cannot read the {what} ({exc.strerror or exc})") from None
    if not stat.S_ISREG(info.st_mode):
        hint = None if stat.S_ISDIR(info.st_mode) else "name a regular file"
        raise fail(f"is {_kind(info.st_mode)}, not a {what}", hint)
    cap = limit.value
    if info.st_size > cap:
        raise fail(f"the {what} is {limit.show(info.st_size)}, {limit.exceeded()}")
    return cap


def read_input(path: str | os.PathLike[str], *, limit: Limit, what: str) -> bytes:
    """The bytes of the regular file `path`, at most `limit`; else `InputError` at once.

    `what` names the file's role for the message (``suite file``, ``requests file``). A
    FIFO, a device, a socket or a directory is refused before it is opened for reading
    (so a FIFO cannot block), and a file larger than the limit before it is read.
    """
    name = os.fspath(path)
    cap = check_input(name, limit=limit, what=what)

    def fail(message: str, hint: str | None = None) -> InputError:
        return InputError(Problem(name, None, "", message, hint))

    try:
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except IsADirectoryError:  # replaced since the check: refuse it all the same
        raise fail(f"is a directory, not a {what}") from None
    except PermissionError:
        raise fail(f"permission denied reading the {what}", "make the file readable") from None
    except OSError as exc:
        raise fail(f"cannot read the {what} ({exc.strerror or exc})") from None
    with os.fdopen(fd, "rb", buffering=0) as fh:
        mode = os.fstat(fh.fileno()).st_mode
        if not stat.S_ISREG(mode):  # replaced between stat and open
            raise fail(f"is {_kind(mode)}, not a {what}")
        chunks: list[bytes] = []
        total = 0
        for chunk in _chunks(fh, name):
            total += len(chunk)
            if total > cap:  # grew while being read
                raise fail(f"the {what} grew while being read, {limit.exceeded()}")
            chunks.append(chunk)
    return b"".join(chunks)


def _chunks(fh: BinaryIO, name: str) -> Iterator[bytes]:
    while True:
        try:
            chunk = fh.read(_MIB)
        except OSError as exc:
            problem = Problem(name, None, "", f"cannot read ({exc.strerror or exc})")
            raise InputError(problem) from None
        if not chunk:
            return
        yield chunk


def read_text(path: str | os.PathLike[str], *, limit: Limit, what: str) -> str:
    """`read_input` decoded as UTF-8 (a BOM is dropped); a non-UTF-8 byte is located."""
    data = read_input(path, limit=limit, what=what)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        message = f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x})"
        problem = Problem(os.fspath(path), line, "", message, "save the file as UTF-8")
        raise InputError(problem) from None


def check_depth(
    value: object, *, where: Path | str, line: int | None = None, key: str = ""
) -> None:
    """Raise `InputError` if `value` (parsed JSON or YAML) nests deeper than `DEPTH`.

    Iterative, so it cannot itself run out of stack on the values it is meant to refuse.
    """
    cap = DEPTH.value
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: list[object] = list(node.values())
        elif isinstance(node, list | tuple):
            children = list(node)
        else:
            continue
        if depth > cap:
            message = f"nested too deep, {DEPTH.exceeded()}"
            raise InputError(Problem(str(where), line, key, message, "flatten the value"))
        stack.extend((child, depth + 1) for child in children)
