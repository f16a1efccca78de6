"""Trusting a run directory: file hashes, the manifest's shape, and the tables' values.

`storage.write_run` records the sha256 and size of every file it writes in the manifest's
``integrity`` entry, and writes the manifest last. Every reader of a run (compare, report,
export-traces, `load_runs`, `--resume` of replications) goes through this module:

- `read_manifest`: a regular file of bounded size holding a JSON object whose known keys
  have the types evalx writes (`thresholds` a list of results, `policy` an object, ...);
- `verify`: each file the reader needs hashes to what the manifest says. A run without
  hashes (written before they were recorded) is refused: re-run it with this evalx;
- `read_table`: a verified Parquet table whose documented columns have their documented
  Arrow types (`harness.records`, `harness.metrics.SUMMARY_COLUMNS`) and whose values are
  in range: finite, never negative, probabilities and rates within [0, 1], missing only
  where the column reference says a value may be missing.

Every failure is an `IntegrityError`: one line naming the file and how to fix it (exit 2).
What the hashes protect against is damage (a disk, a copy, a truncated upload, a hand
edit), not an attacker who can also rewrite the manifest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.errors import EvalxError, InputError
from harness.limits import Limit, read_input
from harness.storage import MANIFEST, REQUESTS, SESSIONS, SPANS, SUMMARY

if TYPE_CHECKING:
    import pyarrow as pa

    from harness.records import Column

__all__ = [
    "ALGORITHM",
    "MANIFEST_BYTES",
    "IntegrityError",
    "bytes_digest",
    "check_table",
    "documented",
    "file_digest",
    "integrity_entry",
    "read_manifest",
    "read_table",
    "verify",
]

ALGORITHM = "sha256"
MANIFEST_BYTES = Limit("size of a run's manifest.json", 64 << 20, "EVALX_MAX_MANIFEST_BYTES",
                       "bytes")  # fmt: skip
"""Largest manifest read (a support run's is 40 KiB): a bigger one is not evalx's."""
RERUN = "re-run the suite with this evalx to write the run again"
RESTORE = "restore the file from a copy or " + RERUN


class IntegrityError(EvalxError):
    """A run directory is damaged, incomplete or was not written by this evalx.

    `path` is the file at fault, `problem` what is wrong with it, `fix` what to do; the
    message is ``path: problem; fix``. Callers with a better fix (a replication part can
    simply be run again) raise `with_fix`.
    """

    def __init__(self, path: Path | str, problem: str, fix: str = RERUN) -> None:
        self.path, self.problem, self.fix = Path(path), problem, fix
        super().__init__(f"{path}: {problem}; {fix}")

    def with_fix(self, fix: str) -> IntegrityError:
        """The same problem with another fix."""
        return IntegrityError(self.path, self.problem, fix)


# --------------------------------------------------------------------------- writing


def file_digest(path: Path) -> dict[str, Any]:
    """``{"sha256": hex, "bytes": size}`` of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
            size += len(block)
    return {ALGORITHM: digest.hexdigest(), "bytes": size}


def bytes_digest(body: bytes) -> dict[str, Any]:
    """`file_digest` of bytes held in memory (remote runs hash before they upload)."""
    return {ALGORITHM: hashlib.sha256(body).hexdigest(), "bytes": len(body)}


def integrity_entry(files: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The manifest's ``integrity`` value for file name -> `file_digest`, names sorted."""
    return {"algorithm": ALGORITHM, "files": {name: dict(files[name]) for name in sorted(files)}}


# --------------------------------------------------------------------------- the manifest

_Finite = Annotated[float, Field(allow_inf_nan=False)]
_Count = Annotated[int, Field(ge=0)]
_Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class _Shape(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class _Threshold(_Shape):
    key: str
    expression: str
    value: _Finite | None = None
    matched: _Count = 0
    passed: bool


class _FileHash(_Shape):
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    bytes: _Count


class _Integrity(_Shape):
    algorithm: Literal["sha256"]
    files: dict[str, _FileHash]


class _Parameter(_Shape):
    value: Any = None
    source: str | None = None


class _Manifest(_Shape):
    """The keys readers use, with the types evalx writes; other keys pass unchecked."""

    schema_version: int | None = None
    suite: str | None = None
    run_id: str | None = None
    suite_hash: str | None = None
    seed: int | None = None
    requests: _Count | None = None
    spans: _Count | None = None
    events: _Count | None = None
    simulated_seconds: _Seconds | None = None
    wall_seconds: _Seconds | None = None
    policy: dict[str, Any] | None = None
    versions: dict[str, Any] | None = None
    parameters: dict[str, _Parameter] | None = None
    thresholds: list[_Threshold] | None = None
    command: list[str] | None = None
    integrity: _Integrity | None = None


def read_manifest(run: Path) -> dict[str, Any]:
    """The manifest of `run` as a dict, after checking its shape; `IntegrityError` if not.

    Refuses a manifest that is not a regular file, is larger than `MANIFEST_BYTES`, is not
    UTF-8 JSON, is not an object, or holds a known key of the wrong type or range.
    """
    path = run / MANIFEST
    try:  # a regular file only (a FIFO would block), and at most MANIFEST_BYTES
        data = read_input(path, limit=MANIFEST_BYTES, what="run manifest")
    except InputError as err:
        problem = err.problems[0]
        raise IntegrityError(path, problem.message, problem.hint or RERUN) from None
    if not data.strip():
        raise IntegrityError(path, "cannot read the manifest (the file is empty)")
    try:
        manifest = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise IntegrityError(path, "cannot read the manifest (binary, not UTF-8 JSON)") from None
    except (json.JSONDecodeError, RecursionError) as exc:
        why = "nested too deep" if isinstance(exc, RecursionError) else str(exc)
        raise IntegrityError(path, f"cannot read the manifest ({why})") from None
    if not isinstance(manifest, dict):
        kind = "a list" if isinstance(manifest, list) else f"a {type(manifest).__name__}"
        raise IntegrityError(path, f"not an evalx run manifest (JSON {kind}, expected an object)")
    try:
        _Manifest.model_validate(manifest)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        raise IntegrityError(
            path, f"{key}: {first['msg'].lower()} (got {_short(first['input'])}); damaged"
        ) from None
    return manifest


def _short(value: object) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


# --------------------------------------------------------------------------- hashes


def verify(run: Path, manifest: Mapping[str, Any], names: Iterable[str]) -> None:
    """Check that each file `names` of `run` has the size and sha256 the manifest records.

    The size is compared first, so a truncated file is named as such without hashing it.
    """
    recorded = manifest.get("integrity")
    if recorded is None:
        raise IntegrityError(
            run / MANIFEST,
            "records no file hashes, so the run cannot be verified (written by an older "
            "evalx, or by another tool)",
        )
    files = recorded["files"]
    for name in names:
        path = run / name
        entry = files.get(name)
        if entry is None:
            raise IntegrityError(path, "not among the files the manifest hashes")
        if not path.is_file():
            raise IntegrityError(path, "missing, but the manifest lists it", RESTORE)
        size = path.stat().st_size
        if size != entry["bytes"]:
            raise IntegrityError(
                path,
                f"{size:,} bytes, but the manifest records {entry['bytes']:,} (truncated or "
                "changed after the run was written)",
                RESTORE,
            )
        if file_digest(path)[ALGORITHM] != entry[ALGORITHM]:
            raise IntegrityError(
                path,
                "sha256 differs from the manifest's (damaged or changed after the run was written)",
                RESTORE,
            )


# --------------------------------------------------------------------------- tables


def read_table(
    run: Path,
    name: str,
    manifest: Mapping[str, Any],
    columns: Iterable[str] | None = None,
    optional: Iterable[str] = (),
) -> pa.Table:
    """Table `name` of `run`, verified (`verify`), type- and range-checked (`check_table`).

    `columns` selects columns (None: all); a missing one is an `IntegrityError` naming
    them all. `optional` columns are read too when the file has them.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    verify(run, manifest, [name])
    path = run / name
    try:
        if columns is None:
            table = pq.read_table(path)
        else:
            wanted = list(columns)
            names = set(pq.read_schema(path).names)
            missing = [c for c in wanted if c not in names]
            if missing:
                s = "s" if len(missing) > 1 else ""
                raise IntegrityError(path, f"lacks column{s} {', '.join(missing)}")
            wanted += [c for c in optional if c in names and c not in wanted]
            table = pq.read_table(path, columns=wanted)
    except (OSError, pa.ArrowException) as exc:
        raise IntegrityError(path, f"cannot read the table ({exc})") from None
    check_table(table, path)
    return table


def documented(name: str) -> dict[str, Column]:
    """The documented columns of table file `name` (empty for an undocumented file)."""
    from harness.metrics import SUMMARY_COLUMNS
    from harness.records import LOG_COLUMNS, REQUEST_COLUMNS, SESSION_COLUMNS, SPAN_COLUMNS

    columns = {
        REQUESTS: (*REQUEST_COLUMNS, *LOG_COLUMNS[:2]),  # source_id, session: log runs
        SPANS: SPAN_COLUMNS,
        SUMMARY: SUMMARY_COLUMNS,
        SESSIONS: SESSION_COLUMNS,
    }.get(name, ())
    return {c.name: c for c in columns}


_MAY_BE_MISSING = {
    REQUESTS: frozenset({"ttft_ms", "confidence"}),
    SPANS: frozenset({"ttft_ms"}),
    SESSIONS: frozenset(),
}
"""Columns whose values may be null or NaN (summary: every number may be, e.g. an empty
route's percentiles or a route-level column that only the `all` row fills)."""


def _probability(table_name: str, column: str) -> bool:
    if table_name == SUMMARY:
        return column.endswith("_rate") or column.startswith("success_ci_")
    return column == "confidence"


def check_table(table: pa.Table, path: Path) -> None:
    """Refuse a table whose documented columns have the wrong type or out-of-range values.

    Types must equal the column reference's. Numbers must be finite and non-negative
    (every documented number is a count, an amount, a time or a share), probabilities and
    rates within [0, 1]; null or NaN only where `_MAY_BE_MISSING` allows (summary: any).
    """
    import pyarrow.compute as pc
    import pyarrow.types as pt

    from harness.records import arrow_type

    docs = documented(path.name)
    missing_ok = _MAY_BE_MISSING.get(path.name)
    for field in table.schema:
        doc = docs.get(field.name)
        if doc is None:
            continue
        expected = arrow_type(doc.type)
        if field.type != expected:
            raise IntegrityError(
                path,
                f"column {field.name} is {field.type}, but schema version {_version(table)} "
                f"stores {expected}",
            )
        floating = pt.is_floating(field.type)
        if not (floating or pt.is_integer(field.type)):
            continue
        column = table[field.name]
        may_miss = missing_ok is None or field.name in missing_ok
        if not may_miss and column.null_count:
            _refuse(path, field.name, "is null", pc.is_null(column))
        if floating and pc.any(pc.is_inf(column)).as_py():
            _refuse(path, field.name, "is infinite", pc.is_inf(column))
        if floating and not may_miss and pc.any(pc.is_nan(column)).as_py():
            _refuse(path, field.name, "is NaN", pc.is_nan(column))
        if _probability(path.name, field.name):
            bad = pc.or_(pc.less(column, 0), pc.greater(column, 1))
            problem = "is outside [0, 1]"
        else:
            bad, problem = pc.less(column, 0), "is negative"
        if pc.any(bad).as_py():
            _refuse(path, field.name, problem, bad)


def _refuse(path: Path, column: str, problem: str, mask: Any) -> None:
    import pyarrow.compute as pc

    row = pc.index(pc.fill_null(mask, False), True).as_py()
    raise IntegrityError(
        path,
        f"column {column} {problem} at row {row:,} (a damaged file, or not written by evalx)",
        RESTORE,
    )


def _version(table: pa.Table) -> str:
    meta = table.schema.metadata or {}
    return str(meta.get(b"evalx.schema_version", b"?").decode(errors="replace"))
