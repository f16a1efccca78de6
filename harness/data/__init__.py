"""Observed data as canonical Arrow tables: request logs, model calls, outcome tables.

Each source gets a small reader that maps its columns to one canonical table per kind
and reports the file, line (or row) and column of any bad value as a `DataError`.
Fitting, replay, import and back-tests work on these tables only, never on the files:

- `read_log` -> `Log`: a request log (CSV, JSON lines, Parquet) for traffic replay;
- `read_calls` -> `Calls`: latencies, errors and tokens of model calls from LLMPerf
  results, OTLP traces or any latency table (columns in `CALLS_SCHEMA`);
- `read_outcomes` -> `Outcomes`: per-prompt scores per model; `score_matrix` lines
  them up prompt by model.

Every result carries the sha256 of the bytes it was read from, so what is made from it
can say exactly which data it came from.
"""

from harness.data._calls import CALL_FIELDS, CALLS_SCHEMA, Calls, read_calls
from harness.data._common import Source
from harness.data._dist import fit_dist
from harness.data._errors import DataError
from harness.data._fit_latency import LatencyFit, ModelLatency, fit_latency
from harness.data._fit_quality import QualityFit, fit_quality, parse_success
from harness.data._fit_traffic import TrafficFit, fit_traffic
from harness.data._fragment import Fit
from harness.data._gof import GoodnessOfFit, goodness_of_fit, ks_distance, quantile_errors
from harness.data._logs import LOG_FIELDS, Log, read_log
from harness.data._outcomes import Outcomes, read_outcomes, score_matrix

__all__ = [
    "CALLS_SCHEMA",
    "CALL_FIELDS",
    "LOG_FIELDS",
    "Calls",
    "DataError",
    "Fit",
    "GoodnessOfFit",
    "LatencyFit",
    "Log",
    "ModelLatency",
    "Outcomes",
    "QualityFit",
    "Source",
    "TrafficFit",
    "fit_dist",
    "fit_latency",
    "fit_quality",
    "fit_traffic",
    "goodness_of_fit",
    "ks_distance",
    "parse_success",
    "quantile_errors",
    "read_calls",
    "read_log",
    "read_outcomes",
    "score_matrix",
]
