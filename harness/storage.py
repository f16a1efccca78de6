"""Run directories on disk: Parquet tables and the manifest, written atomically.

A run is written into a hidden sibling directory and renamed into place only when
every file is complete, so an interrupted or failed run never leaves a directory that
looks like a finished one. Parquet files carry `evalx.schema_version` in their
metadata and nothing time- or host-dependent, so equal runs give equal bytes. The
manifest, written last, records every file's sha256 (`harness.integrity` verifies them).

The hidden directory is `.<name>.<pid>-<random>.partial`, and its files keep a
``.partial`` suffix until the moment before the rename, so neither hive-partitioned
readers nor a glob such as ``runs/**/requests.parquet`` see a run being written or one
left behind by a killed process. Such leftovers are removed by the next write into the
same folder (`remove_stale_partials`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
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
PARTIAL = ".partial"

_STARTED = time.time()
"""When this process loaded the storage layer: a partial directory untouched since is stale."""

_PARTIAL_DIR = re.compile(r"^\..+\.(?:(?P<pid>[0-9]+)-)?[a-z0-9_]{8}\.partial$")
"""The hidden directory of a run being written (`write_run`; older ones had no pid)."""


def write_table(table: pa.Table, path: Path | pa.NativeFile) -> None:
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
            if not os.access(parent, os.W_OK | os.X_OK):
                raise OutputError(f"{out}: cannot create folders in {parent} (permission "
                                  "denied or read-only); choose another --out")  # fmt: skip
            break
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputError(
            f"{out}: output directory already exists and is not empty; "
            "choose another --out or remove it"
        )


def check_file_out(path: Path, what: str, *, append: bool = False) -> None:
    """Refuse an output file that cannot be written, before any work is done.

    `what` names it in the message (``--junit``, ``$GITHUB_STEP_SUMMARY``). An existing
    file is replaced (appended to with `append`); a missing folder is created later,
    except with `append` (a file to append to must already have its folder).
    """
    where = f"{what} {path}"
    if path.is_dir():
        raise OutputError(f"{where}: is a directory; name a file")
    if path.exists():
        if not os.access(path, os.W_OK):
            raise OutputError(f"{where}: not writable (permission denied or read-only); "
                              "choose another path")  # fmt: skip
        return
    if append and not path.parent.is_dir():
        raise OutputError(f"{where}: folder {path.parent} does not exist; create it first")
    for folder in path.parents:
        if folder.exists():
            if not folder.is_dir():
                raise OutputError(f"{where}: {folder} is a file, not a folder; "
                                  "choose another path")  # fmt: skip
            if not os.access(folder, os.W_OK | os.X_OK):
                raise OutputError(f"{where}: cannot create files in {folder} (permission "
                                  "denied or read-only); choose another path")  # fmt: skip
            return


def write_run(
    out: Path | str,
    tables: Mapping[str, pa.Table],
    manifest: Mapping[str, Any],
    extra_files: Mapping[str, str | bytes] | None = None,
) -> Path | str:
    """Write tables and manifest into `out` atomically; returns `out`.

    `tables` maps file name to table; `extra_files` maps file name to text or bytes.
    """
    from harness.integrity import file_digest

    if is_url(out):
        return _write_remote(str(out), tables, manifest, extra_files or {})
    out = Path(out)
    check_out(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"{out}: cannot create the output directory ({err.strerror}); "
                          "choose another --out") from None  # fmt: skip
    remove_stale_partials(out.parent)
    # no '=' in the temporary name: hive-partitioned readers must not take it for a run
    hidden = f".{out.name.replace('=', '-')}.{os.getpid()}-"
    try:
        tmp = Path(tempfile.mkdtemp(prefix=hidden, suffix=PARTIAL, dir=out.parent))
    except OSError as err:
        raise OutputError(f"{out}: cannot write into {out.parent} ({err.strerror}); "
                          "choose another --out") from None  # fmt: skip
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes 0700; a run directory follows the umask
    try:
        for name, table in tables.items():
            write_table(table, tmp / f"{name}{PARTIAL}")
        for name, body in (extra_files or {}).items():
            data = body if isinstance(body, bytes) else body.encode("utf-8")
            (tmp / f"{name}{PARTIAL}").write_bytes(data)
        names = [*tables, *(extra_files or {})]
        digests = {name: file_digest(tmp / f"{name}{PARTIAL}") for name in names}
        (tmp / f"{MANIFEST}{PARTIAL}").write_text(_manifest_text(manifest, digests),
                                                  encoding="utf-8")  # fmt: skip
        for name in [*names, MANIFEST]:  # the manifest last
            os.replace(tmp / f"{name}{PARTIAL}", tmp / name)
        if out.exists():
            out.rmdir()  # empty, checked above
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _manifest_text(manifest: Mapping[str, Any], digests: Mapping[str, Any]) -> str:
    from harness.integrity import integrity_entry

    body = {**manifest, "integrity": integrity_entry(digests)}
    return json.dumps(body, indent=2, sort_keys=True, default=str) + "\n"


def remove_stale_partials(parent: Path) -> list[Path]:
    """Remove what killed writers left in `parent`: evalx's hidden ``.partial`` directories
    (`_PARTIAL_DIR`) that nothing has touched since this process started and whose
    writer, when named and on this host, is no longer running. Returns what was removed.

    A writer that is still at work touches its directory as it writes, and a live pid
    keeps its directory too, so concurrent runs into one folder leave each other alone.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    for entry in entries:
        match = _PARTIAL_DIR.match(entry.name)
        if match is None or not entry.is_dir(follow_symlinks=False):
            continue
        pid = match["pid"]
        if pid is not None and _alive(int(pid)):
            continue
        path = Path(entry.path)
        if _last_touched(path) < _STARTED:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid() or os.name == "nt":  # Windows' os.kill(pid, 0) would signal it
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's), or we cannot tell: keep it
    return True


def _last_touched(path: Path) -> float:
    """The newest modification time of a directory and the files in it."""
    try:
        times = [path.stat().st_mtime]
        times.extend(e.stat(follow_symlinks=False).st_mtime for e in os.scandir(path))
    except OSError:
        return _STARTED  # vanishing as we look: its writer is at work
    return max(times)


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
    import pyarrow as pa

    from harness.integrity import bytes_digest

    fs, path = _remote(url)
    check_out(url)
    fs.makedirs(path, exist_ok=True)
    digests = {}
    for name, table in tables.items():
        sink = pa.BufferOutputStream()
        write_table(table, sink)
        body = sink.getvalue().to_pybytes()
        digests[name] = bytes_digest(body)
        fs.pipe_file(f"{path}/{name}", body)
    for name, text in extra_files.items():
        body = text if isinstance(text, bytes) else text.encode()
        digests[name] = bytes_digest(body)
        fs.pipe_file(f"{path}/{name}", body)
    fs.pipe_file(f"{path}/{MANIFEST}", _manifest_text(manifest, digests).encode())
    return url
