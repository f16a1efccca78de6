"""What the viewer shows, read from run directories: the payload the page embeds.

`open_run` reads a run through `harness.integrity` (hashes, types and ranges checked), so
a damaged run is refused with one line, as everywhere else. `payload` turns one or two
runs into one JSON-ready dict:

- ``rows``: the requests table, column by column (strings as a dictionary and codes,
  numbers rounded for display), at most `max_rows` requests. Beyond that, every
  *notable* request (`notable`: not a success, or a violation, retry, fallback or
  handoff; in two runs also every changed one) is kept and the rest is thinned evenly;
  the run's ``rows_note`` says so.
- ``details``: per request its spans (times relative to its arrival), every request
  column the table does not show, and its prompt and answer text when the run's policy
  retained them, for at most `max_details` requests, changed ones first, then notable
  ones, then the rest in arrival order. A served viewer (`harness.view.serve`) fetches
  any other request's detail from `detail`; a file says how to see it.
- ``pairing``: with two runs of one suite and seed holding the same requests
  (`harness.compare.pairing_problem`), the requests whose outcome changed: success
  flipped, outcome or route changed (`changed_rows`).

Row numbers (positions in the requests table) identify requests everywhere: a replicated
run repeats request ids, one row per replication and request.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import harness
from harness.errors import EvalxError
from harness.integrity import read_manifest, read_table
from harness.storage import MANIFEST, REQUESTS, SPANS
from harness.view import MAX_DETAILS, MAX_ROWS

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

__all__ = [
    "ROW_COLUMNS",
    "Run",
    "changed_rows",
    "detail",
    "notable",
    "open_run",
    "pairing",
    "payload",
]

FORMAT = 1
"""Version of the payload's shape (the page checks it)."""

ROW_COLUMNS: tuple[str, ...] = (
    "request_id",
    "arrival_s",
    "tenant",
    "task_class",
    "route",
    "served_by",
    "tiers_tried",
    "outcome",
    "success",
    "phase",
    "latency_ms",
    "cost_usd",
    "retries",
    "fallbacks",
    "handoff",
    "violations",
    "violation_kinds",
    "prevented_kinds",
)
"""Request columns of the table (`replication`, `source_id` and columns named assert*
are added when a run has them)."""
_OPTIONAL = ("replication", "source_id")
_TEXT = ("prompt", "answer")
_DECIMALS = {"arrival_s": 3, "latency_ms": 1, "cost_usd": 6}

SPAN_KEYS: dict[str, str] = {
    "kind": "kind",
    "name": "name",
    "gen_ai.request.model": "model",
    "gen_ai.tool.name": "tool",
    "tier": "tier",
    "call_index": "call",
    "duration_ms": "duration_ms",
    "queue_ms": "queue_ms",
    "ttft_ms": "ttft_ms",
    "status": "status",
    "http.response.status_code": "http",
    "gen_ai.usage.input_tokens": "input_tokens",
    "gen_ai.usage.output_tokens": "output_tokens",
    "gen_ai.usage.cache_read.input_tokens": "cached_tokens",
    "cost_usd": "cost_usd",
    "fault": "fault",
    "detail": "detail",
    "stage": "stage",
    "guards": "guards",
    "caught": "caught",
    "acted": "acted",
    "violation": "violation",
}
"""Span columns the page reads, by the short key it reads them under. Empty, false and
zero values are left out (`_span`); ``start_ms`` (from the request's arrival) is added."""
_ALWAYS = frozenset({"kind", "name", "duration_ms", "start_ms"})


@dataclass(frozen=True)
class Run:
    """One run directory, read and checked: what the viewer needs of it."""

    path: Path
    manifest: Mapping[str, Any]
    requests: pd.DataFrame
    spans: pa.Table | None
    """Sorted by request (replication, request_id) then span_index; None: no spans file."""
    span_keys: np.ndarray
    """Each span's request key (`_keys`), sorted: `detail` finds a request's spans by it."""
    width: int
    """Key stride of a replication (`_keys`)."""

    @property
    def name(self) -> str:
        return self.path.name or str(self.path)

    @property
    def text_retained(self) -> bool:
        """Whether the run's policy kept prompt and answer text (policies.retention)."""
        param = (self.manifest.get("parameters") or {}).get("policies.retention.store_text")
        if isinstance(param, Mapping) and isinstance(param.get("value"), bool):
            return bool(param["value"])
        return "prompt" in self.requests and bool((self.requests["prompt"] != "").any())


def open_run(path: Path) -> Run:
    """Read and check run directory `path` (`harness.integrity`); `EvalxError` if it is
    missing, not a run, or damaged."""
    if not path.exists():
        raise EvalxError(f"{path}: no such run directory")
    if not path.is_dir():
        raise EvalxError(f"{path}: not a run directory (a file); pass the folder of a run")
    missing = [n for n in (MANIFEST, REQUESTS) if not (path / n).is_file()]
    if missing:
        raise EvalxError(
            f"{path}: not a run directory (no {' and no '.join(missing)}); "
            "pass a directory written by evalx run"
        )
    manifest = read_manifest(path)
    requests: pd.DataFrame = read_table(path, REQUESTS, manifest).to_pandas()
    listed = (manifest.get("integrity") or {}).get("files") or {}
    spans = None
    if SPANS in listed or (path / SPANS).exists():
        table = read_table(path, SPANS, manifest)
        by = [c for c in ("replication", "request_id", "span_index") if c in table.column_names]
        spans = table.sort_by([(c, "ascending") for c in by])
    width = _width(requests, spans)
    keys = _keys(spans, width) if spans is not None else np.zeros(0, np.int64)
    return Run(path, manifest, requests, spans, keys, width)


def _width(requests: pd.DataFrame, spans: pa.Table | None) -> int:
    """One more than the largest request id: replication r's keys start at r * width."""
    top = int(requests["request_id"].max()) if len(requests) else 0
    if spans is not None and spans.num_rows:
        import pyarrow.compute as pc

        top = max(top, int(pc.max(spans["request_id"]).as_py()))
    return top + 1


def _keys(table: pa.Table | pd.DataFrame, width: int) -> np.ndarray:
    """Request keys: request_id, plus replication times `width` in a replicated run."""
    ids = np.asarray(table["request_id"], dtype=np.int64)
    names = table.column_names if hasattr(table, "column_names") else list(table.columns)
    if "replication" in names:
        ids = ids + np.asarray(table["replication"], dtype=np.int64) * width
    return ids


# --------------------------------------------------------------------------- selection


def notable(requests: pd.DataFrame) -> np.ndarray:
    """Requests worth opening first: not a success, or a violation, retry, fallback or
    handoff (bool per row)."""
    mask = ~requests["success"].to_numpy(bool)
    for column in ("violations", "retries", "fallbacks"):
        if column in requests:
            mask |= requests[column].to_numpy() > 0
    if "handoff" in requests:
        mask |= requests["handoff"].to_numpy(bool)
    return np.asarray(mask)


def changed_rows(baseline: pd.DataFrame, candidate: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """Rows of two paired requests tables whose outcome changed, and what changed in each
    ("success", "outcome", "route", joined by ", "): success flipped, outcome or route
    differs."""
    what = []
    masks = []
    for column in ("success", "outcome", "route"):
        differ = baseline[column].to_numpy() != candidate[column].to_numpy()
        masks.append(np.asarray(differ, dtype=bool))
    rows = np.flatnonzero(np.logical_or.reduce(masks)) if masks else np.zeros(0, np.int64)
    names = ("success", "outcome", "route")
    for row in rows:
        what.append(", ".join(n for n, m in zip(names, masks, strict=True) if m[row]))
    return rows, what


def _thin(n: int, keep: np.ndarray, cap: int) -> np.ndarray:
    """Row numbers to show when `n` > `cap`: the `keep` rows (first `cap` of them), then
    rows spread evenly over the rest; sorted."""
    first = np.flatnonzero(keep)[:cap]
    rest = np.flatnonzero(~keep)
    room = cap - len(first)
    if room > 0 and len(rest):
        picks = np.unique(np.linspace(0, len(rest) - 1, min(room, len(rest))).round().astype(int))
        first = np.concatenate([first, rest[picks]])
    return np.sort(first)


# --------------------------------------------------------------------------- encoding


def _number(value: Any, decimals: int | None = None) -> float | int | None:
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    x = float(value)
    if math.isnan(x) or math.isinf(x):
        return None
    return round(x, decimals) if decimals is not None else x


def _column(series: pd.Series) -> Any:
    """A column for the page: one value throughout as {"fill"}, strings as {"dict",
    "codes"}, booleans as 0/1, numbers rounded as shown (`_DECIMALS`), missing as null."""
    import pandas as pd

    kind = series.dtype.kind
    if len(series) and series.nunique(dropna=False) == 1:
        return {"fill": _plain(series.iloc[0])}
    if kind in "OUSTt" or isinstance(series.dtype, pd.StringDtype):
        codes, uniques = pd.factorize(series.fillna("").astype(str), sort=True)
        return {"dict": [str(u) for u in uniques], "codes": codes.tolist()}
    if kind == "b":
        return series.to_numpy(dtype=np.int8).tolist()
    if kind in "iu":
        return series.to_numpy(dtype=np.int64).tolist()
    values = series.to_numpy(dtype=float)
    decimals = _DECIMALS.get(str(series.name))
    if decimals is not None:
        values = np.round(values, decimals)
    return [None if not math.isfinite(v) else v for v in values.tolist()]


def _row_columns(requests: pd.DataFrame) -> list[str]:
    extra = [c for c in _OPTIONAL if c in requests]
    asserts = [c for c in requests.columns if str(c).startswith("assert")]
    return [*[c for c in ROW_COLUMNS if c in requests], *extra, *asserts]


def _span(row: Mapping[str, Any], arrival_s: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for column, key in SPAN_KEYS.items():
        value = row.get(column)
        if isinstance(value, str):
            if value or key in _ALWAYS:
                out[key] = value
        elif isinstance(value, bool):
            if value:
                out[key] = True
        else:
            number = _number(value, 1 if key.endswith("_ms") else 8 if key == "cost_usd" else None)
            if number or key in _ALWAYS:
                out[key] = number
    start = row.get("start_s")
    out["start_ms"] = _number((float(start) - arrival_s) * 1000, 1) if start is not None else 0
    return out


def detail(run: Run, row: int) -> dict[str, Any]:
    """One request of `run` (by row number) as the page opens it: the request columns the
    table does not show (``request``), its spans in order (``spans``, `SPAN_KEYS`) and,
    when retained, its ``prompt`` and ``answer``. `IndexError` for a row out of range."""
    if not 0 <= row < len(run.requests):
        raise IndexError(row)
    record = run.requests.iloc[row]
    shown = set(_row_columns(run.requests)) | set(_TEXT)
    request = {str(k): _plain(v) for k, v in record.items() if k not in shown}
    out: dict[str, Any] = {"row": row, "request": request, "spans": []}
    if run.text_retained:
        out["prompt"] = str(record.get("prompt", "") or "")
        out["answer"] = str(record.get("answer", "") or "")
    if run.spans is not None:
        key = int(_keys(run.requests.iloc[[row]], run.width)[0])
        lo, hi = np.searchsorted(run.span_keys, [key, key + 1])
        arrival = float(record["arrival_s"])
        rows = run.spans.slice(int(lo), int(hi - lo)).to_pylist()
        out["spans"] = [_span(s, arrival) for s in rows]
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, str) or value is None:
        return value
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    return _number(value)


# --------------------------------------------------------------------------- the payload


def _info(run: Run) -> dict[str, Any]:
    m = run.manifest
    return {
        "name": run.name,
        "path": str(run.path),
        "suite": m.get("suite"),
        "seed": m.get("seed"),
        "run_id": m.get("run_id"),
        "policy": (m.get("policy") or {}).get("name"),
        "requests": len(run.requests),
        "text_retained": run.text_retained,
        "has_spans": run.spans is not None,
    }


def pairing(runs: Sequence[Run]) -> str | None:
    """Why two runs cannot be paired request by request, or None if they can: the same
    suite and seed (as `evalx compare` asks) and the same requests (`pairing_problem`)."""
    from harness.compare import pairing_problem

    base, cand = runs
    reasons = []
    for key, what in (("suite", "suites"), ("seed", "seeds")):
        b, c = base.manifest.get(key), cand.manifest.get(key)
        if b != c:
            reasons.append(f"{what} differ ({b!r} vs {c!r})")
    if not reasons:
        problem = pairing_problem(base.requests, cand.requests)
        if problem is not None:
            reasons.append(problem)
    return "; ".join(reasons) or None


def payload(
    runs: Sequence[Run],
    *,
    max_rows: int = MAX_ROWS,
    max_details: int = MAX_DETAILS,
    served: bool = False,
) -> dict[str, Any]:
    """The page's data for one run, or two (baseline, candidate); see the module doc.

    `served`: the page is served by `harness.view.serve` and may fetch any request's
    detail, so its notes say so instead of naming the limit's option.
    """
    if not 1 <= len(runs) <= 2:
        raise ValueError("one or two runs")
    problem = pairing(runs) if len(runs) == 2 else "one run"
    paired = problem is None
    n = len(runs[0].requests)
    changed = np.zeros(0, np.int64)
    what: list[str] = []
    keep = notable(runs[0].requests)
    if paired:
        changed, what = changed_rows(runs[0].requests, runs[1].requests)
        keep = keep | notable(runs[1].requests)
        keep[changed] = True
    out_runs = []
    shown_by_run: list[np.ndarray] = []
    for i, run in enumerate(runs):
        total = len(run.requests)
        mask = keep if paired or i == 0 else notable(run.requests)
        shown = np.arange(total) if total <= max_rows else _thin(total, mask, max_rows)
        shown_by_run.append(shown)
        info = _info(run)
        info["rows_note"] = _rows_note(total, len(shown), int(mask.sum()), paired and i > 0)
        frame = run.requests.iloc[shown]
        info["rows"] = {
            "n": len(shown),
            "row": None if len(shown) == total else shown.tolist(),
            "columns": {c: _column(frame[c]) for c in _row_columns(run.requests)},
        }
        out_runs.append(info)
    changed_pos = np.searchsorted(shown_by_run[0], changed) if paired else changed
    for i, run in enumerate(runs):
        shown = shown_by_run[i]
        local_keep = (keep if paired or i == 0 else notable(run.requests))[shown]
        first = np.zeros(len(shown), bool)
        if paired and len(runs) == 2:
            first[changed_pos] = True
        order = np.concatenate([np.flatnonzero(first), np.flatnonzero(local_keep & ~first),
                                np.flatnonzero(~local_keep & ~first)])  # fmt: skip
        picked = sorted(order[:max_details].tolist())
        out_runs[i]["details"] = {str(p): detail(run, int(shown[p])) for p in picked}
        out_runs[i]["details_note"] = _details_note(len(shown), len(picked), served)
    result: dict[str, Any] = {
        "format": FORMAT,
        "evalx": harness.__version__,
        "served": served,
        "runs": out_runs,
        "limits": {"max_rows": max_rows, "max_details": max_details},
    }
    if len(runs) == 2:
        result["pairing"] = {
            "paired": paired,
            "problem": problem,
            "changed": changed_pos.tolist() if paired else [],
            "what": what if paired else [],
            "requests": n,
        }
    return result


def _rows_note(total: int, shown: int, kept: int, same_as_first: bool) -> str | None:
    if shown == total:
        return None
    if same_as_first:
        return f"showing the same {shown:,} of {total:,} requests as the baseline"
    rest = shown - min(kept, shown)
    return (
        f"showing {shown:,} of {total:,} requests: {min(kept, shown):,} notable ones (not a "
        f"success, or a violation, retry, fallback or handoff) and {rest:,} spread evenly over "
        "the rest; set --rows to show more"
    )


def _details_note(shown: int, embedded: int, served: bool) -> str | None:
    if embedded == shown or served:
        return None
    return (
        f"this file holds the spans and text of {embedded:,} of {shown:,} requests (changed "
        "and notable ones first); open any other with `evalx view RUN --serve`, or write "
        "more with --details"
    )
