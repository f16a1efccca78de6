"""Many runs as one dataset: every run directory under a root, as four DataFrames.

Runs are laid out hive-style, `runs/suite=<name>/run=<run id>/requests.parquet`, so
pandas, DuckDB and Polars read a folder of runs without a loader. `load_runs` is the
loader for when the manifests matter: it tags every row with the run it came from and
with the run's parameters, so runs of a sweep or an ablation can be grouped by the
knobs that differ between them::

    runs = load_runs("runs")
    runs.requests.groupby(["stack.escalation.confidence_threshold", "route"])["success"].mean()

`DUCKDB_QUERY` shows the same data through DuckDB alone.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import EvalxError
from harness.integrity import IntegrityError, read_manifest, read_table
from harness.metrics import SUMMARY_COLUMNS
from harness.records import REQUEST_COLUMNS, SPAN_COLUMNS, Column
from harness.storage import MANIFEST, REQUESTS, SPANS, SUMMARY

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DUCKDB_QUERY", "RUNS_ENV", "DatasetError", "Runs", "find_runs", "load_runs"]

RUN_KEYS = ("suite", "run")
"""Columns that identify a run in every table; unique together."""

RUN_COLUMNS = (*RUN_KEYS, "seed", "policy")
"""Columns every request and summary row carries about its run, before its parameters."""

MANIFEST_FACTS = ("suite_hash", "policy_version", "policy_hash", "requests", "wall_seconds", "path")
"""Columns of `Runs.manifests` after the run columns and parameters."""

_COVERED = frozenset({"seed", "name"})
"""Parameters already present as run columns (`seed`; `name` is the suite)."""

DUCKDB_QUERY = """\
SELECT
    suite,
    run,
    count(*) AS requests,
    sum(success::INTEGER) / count(*) AS success_rate,
    quantile_cont(latency_ms, 0.95) AS p95_latency_ms,
    fsum(cost_usd) / count(*) AS cost_per_request_usd
FROM read_parquet('{root}/suite=*/run=*/requests.parquet', hive_partitioning = true)
GROUP BY suite, run
ORDER BY suite, run
"""
"""The `all` row of each run's summary, computed by DuckDB from the requests alone.

Fill in the runs root with `DUCKDB_QUERY.format(root=...)` and run it with
`duckdb.sql(...)`. `suite` and `run` come from the hive directory names;
`quantile_cont` interpolates linearly between order statistics, as the summary does
(numpy's default), so p95 agrees to rounding; `fsum` (compensated summation) makes the
cost independent of DuckDB's thread order, equal to the summary's to about 1e-15
relative. The root must not contain a quote. The glob names the hive layout `evalx run`
writes by default: `**` would also reach runs written elsewhere under the root (`--out
runs/policy/old`), and DuckDB refuses files whose folders name different partition
keys ("Hive partition mismatch"). A run being written, or left behind by a killed process,
is a hidden folder holding only `*.partial` files (`harness.storage`), which the glob does
not match. Unlike `load_runs`, DuckDB verifies no hashes.
"""


RUNS_ENV = "EVALX_RUNS"
"""Environment variable naming the runs folder an analysis reads (`find_runs`)."""


class DatasetError(EvalxError):
    """Runs cannot be loaded as asked: none found, unreadable, ambiguous or unknown keys."""


def find_runs(start: str | Path | None = None) -> Path:
    """The runs folder to analyse: `$EVALX_RUNS` if set, else the nearest `runs/` folder in
    `start` (default: the working directory) or above it.

    `evalx run` writes `runs/` in the folder it runs from, usually the project root; Jupyter
    starts a notebook in the notebook's own folder (`reports/`), so looking upwards finds the
    project's runs from any folder inside the project.
    """
    env = os.environ.get(RUNS_ENV)
    if env:
        return Path(env)
    here = Path(start if start is not None else os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "runs").is_dir():
            return folder / "runs"
    raise DatasetError(
        f"{here}: no runs/ folder here or above; run `evalx run SUITE` in the project "
        f"root first, or set {RUNS_ENV} to a folder holding runs"
    )


@dataclass(frozen=True)
class Runs:
    """Every table of every run under a root, each row tagged with its run.

    `requests`: the documented request columns, after `suite`, `run`, `seed`, `policy`
    (the policy's name) and one column per selected parameter, named by its dotted key.
    `spans`: the span columns after `suite` and `run` (empty if not loaded).
    `summaries`: the summary rows (one per route, plus `all`) after the same columns as
    `requests`. `manifests`: one row per run: the same run columns and parameters, then
    `MANIFEST_FACTS` (`suite_hash`, `policy_version`, `policy_hash`, `requests`,
    `wall_seconds`, `path`). Runs appear in path order; `(suite, run)` is unique.
    """

    requests: pd.DataFrame
    spans: pd.DataFrame
    summaries: pd.DataFrame
    manifests: pd.DataFrame

    @property
    def parameters(self) -> list[str]:
        """The parameter columns, in the order they appear: by default the parameters
        that differ between runs of one suite."""
        return list(self.manifests.columns[len(RUN_COLUMNS) : -len(MANIFEST_FACTS)])


@dataclass(frozen=True)
class _Run:
    path: Path
    suite: str
    run: str
    manifest: Mapping[str, Any]

    def value(self, key: str) -> Any:
        entry = self.manifest.get("parameters", {}).get(key)
        value = entry.get("value") if isinstance(entry, Mapping) else None
        # lists and mappings as JSON text, so a parameter column stays hashable (groupby)
        return json.dumps(value, sort_keys=True) if isinstance(value, list | dict) else value

    def tags(self, parameters: Sequence[str]) -> dict[str, Any]:
        policy = self.manifest.get("policy") or {}
        tags = {
            "suite": self.suite,
            "run": self.run,
            "seed": self.manifest.get("seed"),
            "policy": policy.get("name"),
        }
        return tags | {key: self.value(key) for key in parameters}


def load_runs(
    root: str | Path, *, parameters: Sequence[str] | None = None, spans: bool = True
) -> Runs:
    """Load every run directory under `root` (at any depth) into one `Runs`.

    A run directory holds `manifest.json` and `requests.parquet`; hidden directories
    (interrupted runs' `.partial` ones) are skipped. Every table read is verified
    against its manifest's hash and checked against the column reference
    (`harness.integrity`); a damaged run raises `DatasetError` naming the file. `suite`
    and `run` come from
    `suite=`/`run=` directory names when present, else from the manifest.
    `parameters` selects the parameter columns by dotted key; by default, every
    parameter whose value differs between two runs of the same suite (so a folder of
    sweep runs gets exactly its swept knobs, and runs of two suites do not list every
    key in which the suites differ: the `suite` column says that). Lists and mappings
    become their JSON text; other values keep their type. `spans=False` skips the
    largest table.
    """
    import pandas as pd

    root = Path(root)
    runs = list(_find(root))
    if not runs:
        raise DatasetError(
            f"{root}: no run directories found (a run has {MANIFEST} and {REQUESTS}); "
            "pass the --out of `evalx run` or a folder holding runs"
        )
    _check_unique(runs)
    keys = _varying(runs) if parameters is None else _known(runs, parameters)

    front = pd.DataFrame([run.tags(keys) for run in runs])
    requests = _stack(runs, REQUESTS, front, REQUEST_COLUMNS)
    summaries = _stack(runs, SUMMARY, front, SUMMARY_COLUMNS)
    spans_df = _stack(runs if spans else [], SPANS, front[list(RUN_KEYS)], SPAN_COLUMNS)
    manifests = pd.concat([front, pd.DataFrame([_manifest_row(r) for r in runs])], axis=1)
    return Runs(requests=requests, spans=spans_df, summaries=summaries, manifests=manifests)


def _stack(
    runs: list[_Run], name: str, front: pd.DataFrame, columns: tuple[Column, ...]
) -> pd.DataFrame:
    """One table of every run (those that have it), after its run's `front` row.

    The run columns are built once over all rows, so a parameter that is, say, a float
    in one run and null in another becomes a float column with NaN, not objects.
    """
    import numpy as np
    import pandas as pd

    frames: list[pd.DataFrame] = []
    rows: list[int] = []
    for i, run in enumerate(runs):
        if (run.path / name).exists():
            try:
                table = read_table(run.path, name, run.manifest)
            except IntegrityError as err:
                raise DatasetError(str(err)) from None
            frames.append(table.to_pandas())
            rows.append(i)
    if not frames:
        return pd.DataFrame(columns=[*front.columns, *(c.name for c in columns)])
    data = pd.concat(frames, ignore_index=True)
    tags = front.iloc[np.repeat(rows, [len(f) for f in frames])].reset_index(drop=True)
    return pd.concat([tags, data], axis=1)


def _find(root: Path) -> Iterator[_Run]:
    """Run directories under `root`, in sorted path order; a run's subfolders are skipped."""
    if not root.is_dir():
        raise DatasetError(f"{root}: not a directory; pass a folder holding runs")
    for here, dirs, files in os.walk(root):
        path = Path(here)
        if MANIFEST in files and REQUESTS in files:
            dirs.clear()
            yield _read(root, path)
            continue
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))


def _read(root: Path, path: Path) -> _Run:
    try:
        manifest = read_manifest(path)
    except IntegrityError as err:
        raise DatasetError(str(err)) from None
    hive = dict(part.split("=", 1) for part in path.relative_to(root).parts if "=" in part)
    suite = hive.get("suite", manifest.get("suite"))
    rid = hive.get("run", manifest.get("run_id"))
    if not suite or not rid:
        raise DatasetError(
            f"{path}: cannot tell the suite and run id (no suite=/run= folder, "
            "and the manifest lacks suite or run_id)"
        )
    return _Run(path=path, suite=str(suite), run=str(rid), manifest=manifest)


def _check_unique(runs: list[_Run]) -> None:
    seen: dict[tuple[str, str], Path] = {}
    for run in runs:
        key = (run.suite, run.run)
        if key in seen:
            raise DatasetError(
                f"{run.path}: suite {run.suite} run {run.run} also at {seen[key]}; "
                "load a root holding one copy of each run"
            )
        seen[key] = run.path


def _all_keys(runs: list[_Run]) -> list[str]:
    keys: dict[str, None] = {}
    for run in runs:
        keys.update(dict.fromkeys(run.manifest.get("parameters", {})))
    return list(keys)


def _varying(runs: list[_Run]) -> list[str]:
    """Parameters whose value is not the same in every run of some suite, in manifest order
    (a key one run of the suite lacks differs from any value)."""
    suites: dict[str, list[_Run]] = {}
    for run in runs:
        suites.setdefault(run.suite, []).append(run)

    def varies(key: str) -> bool:
        return any(len({json.dumps(r.value(key)) for r in group}) > 1 for group in suites.values())

    return [key for key in _all_keys(runs) if key not in _COVERED and varies(key)]


def _known(runs: list[_Run], parameters: Sequence[str]) -> list[str]:
    """The asked-for parameters, checked against the manifests; run columns are dropped."""
    keys = _all_keys(runs)
    for key in parameters:
        if key not in keys and key not in RUN_COLUMNS:
            close = difflib.get_close_matches(key, keys, n=1)
            hint = f"did you mean {close[0]}?" if close else "see a manifest's parameters"
            raise DatasetError(f"parameter {key}: in no run's manifest; {hint}")
    return list(dict.fromkeys(k for k in parameters if k not in RUN_COLUMNS))


def _manifest_row(run: _Run) -> dict[str, Any]:
    """The manifest facts beside a run's tags (`suite`, `run`, `seed`, ... come from those)."""
    m = run.manifest
    policy = m.get("policy") or {}
    values = (m.get("suite_hash"), policy.get("version"), policy.get("hash"),
              m.get("requests"), m.get("wall_seconds"), str(run.path))  # fmt: skip
    return dict(zip(MANIFEST_FACTS, values, strict=True))
