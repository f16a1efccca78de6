"""`evalx view`: look inside a run, one request at a time, in a browser.

One self-contained HTML file (no CDN, no network) holds a sortable, filterable table of a
run's requests and, for a request clicked, its timeline: every span as a waterfall (queue,
model attempts, retries and backoff, breaker rejections, tool calls, guardrail decisions
with what they caught, fallbacks, handoff) with the prompt and answer where the run's
policy retained them. Given two runs (baseline, candidate) of one suite and seed, it pairs
them request by request and lists the requests whose outcome changed, side by side.

- `open_run` reads a run directory through `harness.integrity` (damaged: `EvalxError`);
- `payload` makes the page's data, bounded (`MAX_ROWS` requests in the table,
  `MAX_DETAILS` requests' spans and text embedded; see `harness.view._data`);
- `render` makes the page; `make_server` serves it on 127.0.0.1 and answers the detail
  of any request on demand, so a served page has no detail bound.

Layering: reads `integrity`, `storage` and `compare.pairing_problem`; only `cli` imports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

MAX_ROWS = 200_000
"""Requests in the table by default: a 200,000-request run fits whole (about 9 MB)."""
MAX_DETAILS = 1_000
"""Requests whose spans and text a file embeds by default (about 1 kB each)."""

if TYPE_CHECKING:
    from harness.view._data import (
        ROW_COLUMNS,
        Run,
        changed_rows,
        detail,
        notable,
        open_run,
        pairing,
        payload,
    )
    from harness.view._page import json_block, render
    from harness.view._server import HOST, make_server

__all__ = [
    "HOST",
    "MAX_DETAILS",
    "MAX_ROWS",
    "ROW_COLUMNS",
    "Run",
    "changed_rows",
    "detail",
    "json_block",
    "make_server",
    "notable",
    "open_run",
    "pairing",
    "payload",
    "render",
]

_HOMES = {"json_block": "_page", "render": "_page", "HOST": "_server", "make_server": "_server"}


def __getattr__(name: str) -> Any:
    """The rest loads on first use (numpy, pyarrow): `evalx --help` reads the bounds only."""
    if name not in __all__:
        raise AttributeError(f"module 'harness.view' has no attribute {name!r}")
    import importlib

    module = importlib.import_module(f"harness.view.{_HOMES.get(name, '_data')}")
    return getattr(module, name)
