"""Figures written as PNG files: the sweep's cost-vs-success frontier and the request-level
figures of one run (latency CDF, timeline, cost by tier, tier paths).

Matplotlib is imported inside the functions, so importing this module stays cheap. The
figures are bare `Figure` objects saved through Agg, never `pyplot`: no global backend
switch (an analyst's notebook keeps its inline backend), no figure registry to leak
into, and no display needed.

`pareto_mask` is the frontier rule the plot uses; other modules may call it.

Layout: `_common` (size, shared colours, make/label/save helpers) under `_frontier`
(the sweep figure), `_latency` (latency CDF), `_timeline` (success and p95 over time,
fault and spike windows as `harness.faults.TimeWindow`; `bucket_size` is its time
bucket) and `_tiers` (cost by route and tier, tier paths).
"""

from harness.plots._frontier import (
    CONFIRMED_FRONTIER,
    FRONTIER_COLUMNS,
    INTERVAL_COLUMNS,
    SCREENED,
    frontier_figure,
    frontier_png,
    pareto_mask,
)
from harness.plots._latency import latency_cdf_png
from harness.plots._tiers import cost_png, paths_png
from harness.plots._timeline import bucket_size, timeline_figure, timeline_png

__all__ = [
    "CONFIRMED_FRONTIER",
    "FRONTIER_COLUMNS",
    "INTERVAL_COLUMNS",
    "SCREENED",
    "bucket_size",
    "cost_png",
    "frontier_figure",
    "frontier_png",
    "latency_cdf_png",
    "pareto_mask",
    "paths_png",
    "timeline_figure",
    "timeline_png",
]
