"""Run directories on disk: Parquet tables and the manifest, written atomically.

A run is written into a hidden sibling directory and renamed into place only when
every file is complete, so an interrupted or failed run never leaves a directory that
looks like a finished one. Parquet files carry `evalx.schema_version` in their
metadata and nothing time- or host-dependent, so equal runs give equal bytes.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import OutputError

if TYPE_CHECKING:
    import pyarrow as pa

REQUESTS, SPANS, SUMMARY, MANIFEST = (
    "requests.parquet",
    "spans.parquet",
    "summary.parquet",
    "manifest.json",
)
SESSIONS = "sessions.parquet"


def write_table(table: pa.Table, path: Path) -> None:
    """Write one Parquet file deterministically (no created-by timestamps, fixed options)."""
    import pyarrow.parquet as pq

    pq.write_table(
        table,
        path,
        compression="zstd",
        row_group_size=1 << 20,
        write_statistics=True,
        store_schema=True,
    )


def is_url(out: str | Path) -> bool:
    """An fsspec URL (s3://, gs://, memory://, ...) rather than a local path."""
    text = str(out)
    return "://" in text and not text.startswith("file://")


def _remote(url: str) -> tuple[Any, str]:
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(url)
        return fs, str(path)
    except (ImportError, ValueError) as err:
        raise OutputError(f"{url}: cannot open this location ({err})") from None


def check_out(out: Path | str) -> None:
    """Refuse an output directory that exists and is not empty, before any work is done."""
    if is_url(out):
        fs, path = _remote(str(out))
        if fs.exists(path) and fs.ls(path):
            raise OutputError(
                f"{out}: output location exists and is not empty; choose another --out"
            )
        return
    out = Path(out)
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise OutputError(
                    f"{out}: {parent} is a file, not a directory; choose another --out"
                )
            break
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputError(
            f"{out}: output directory already exists and is not empty; "
            "choose another --out or remove it"
        )


def write_run(
    out: Path | str,
    tables: Mapping[str, pa.Table],
    manifest: Mapping[str, Any],
    extra_files: Mapping[str, str | bytes] | None = None,
) -> Path | str:
    """Write tables and manifest into `out` atomically; returns `out`.

    `tables` maps file name to table; `extra_files` maps file name to text or bytes.
    """
    if is_url(out):
        return _write_remote(str(out), tables, manifest, extra_files or {})
    out = Path(out)
    check_out(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"{out}: cannot create the output directory ({err.strerror}); "
                          "choose another --out") from None  # fmt: skip
    # no '=' in the temporary name: hive-partitioned readers must not take it for a run
    hidden = f".{out.name.replace('=', '-')}."
    tmp = Path(tempfile.mkdtemp(prefix=hidden, suffix=".partial", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes 0700; a run directory follows the umask
    try:
        for name, table in tables.items():
            write_table(table, tmp / name)
        for name, body in (extra_files or {}).items():
            if isinstance(body, bytes):
                (tmp / name).write_bytes(body)
            else:
                (tmp / name).write_text(body, encoding="utf-8")
        (tmp / MANIFEST).write_text(
            json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8"
        )
        if out.exists():
            out.rmdir()  # empty, checked above
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def column_reference() -> str:
    """Markdown reference of every column of every table a run writes."""
    from harness.metrics import SUMMARY_COLUMNS
    from harness.records import (
        LOG_COLUMNS,
        REQUEST_COLUMNS,
        SESSION_COLUMNS,
        SPAN_COLUMNS,
        markdown,
    )

    return markdown({REQUESTS: REQUEST_COLUMNS, f"{REQUESTS}, replaying a log": LOG_COLUMNS,
                     SPANS: SPAN_COLUMNS, SUMMARY: SUMMARY_COLUMNS,
                     SESSIONS: SESSION_COLUMNS})  # fmt: skip


def _write_remote(
    url: str,
    tables: Mapping[str, pa.Table],
    manifest: Mapping[str, Any],
    extra_files: Mapping[str, str | bytes],
) -> str:
    """A run directory on an fsspec filesystem, through pyarrow's filesystem layer.

    Object stores have no atomic rename: files go up first and the manifest last, so a
    location without manifest.json is an incomplete run (readers skip it).
    """
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    fs, path = _remote(url)
    check_out(url)
    arrow_fs = pafs.PyFileSystem(pafs.FSSpecHandler(fs))
    fs.makedirs(path, exist_ok=True)
    for name, table in tables.items():
        pq.write_table(
            table, f"{path}/{name}", filesystem=arrow_fs, compression="zstd",
            row_group_size=1 << 20, write_statistics=True, store_schema=True,
        )  # fmt: skip
    for name, body in extra_files.items():
        fs.pipe_file(f"{path}/{name}", body if isinstance(body, bytes) else body.encode())
    text = json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n"
    fs.pipe_file(f"{path}/{MANIFEST}", text.encode())
    return url
