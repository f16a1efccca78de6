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


def check_out(out: Path) -> None:
    """Refuse an output directory that exists and is not empty, before any work is done."""
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
    out: Path,
    tables: Mapping[str, pa.Table],
    manifest: Mapping[str, Any],
    extra_files: Mapping[str, str | bytes] | None = None,
) -> Path:
    """Write tables and manifest into `out` atomically; returns `out`.

    `tables` maps file name to table; `extra_files` maps file name to text or bytes.
    """
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
    from harness.records import REQUEST_COLUMNS, SPAN_COLUMNS, markdown

    return markdown({REQUESTS: REQUEST_COLUMNS, SPANS: SPAN_COLUMNS, SUMMARY: SUMMARY_COLUMNS})
