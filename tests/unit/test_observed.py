"""Observed calls as a run directory: documented schemas, arrivals, outcomes, cost."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa

from harness.data import CALLS_SCHEMA, Calls, Source
from harness.observed import NEUTRAL, Prices, arrivals, observed_run, observed_tables
from harness.records import REQUEST_COLUMNS, SPAN_COLUMNS, schema
from harness.storage import REQUESTS, SPANS, SUMMARY


def calls_table(start: list[float | None] | None = None) -> pa.Table:
    n = 4
    return pa.table(
        {
            "model": ["m"] * n,
            "start_s": start if start is not None else [None] * n,
            "ttft_s": [0.1, 0.2, None, None],
            "latency_s": [1.0, 2.0, None, 30.0],
            "input_tokens": [100, 200, 50, None],
            "output_tokens": [10, 20, None, None],
            "status": ["ok", "ok", "error", "timeout"],
            "error": ["", "", "boom", "timed out"],
            "source": ["f.json"] * n,
            "row": list(range(n)),
        },
        schema=CALLS_SCHEMA,
    )


def test_tables_have_exactly_the_documented_schemas() -> None:
    tables = observed_tables(calls_table())
    assert tables[REQUESTS].schema.equals(schema(REQUEST_COLUMNS), check_metadata=False)
    assert tables[SPANS].schema.equals(schema(SPAN_COLUMNS), check_metadata=False)
    assert tables[SUMMARY].num_rows == 2  # route m and all


def test_one_request_and_one_chat_span_per_call() -> None:
    tables = observed_tables(calls_table(), Prices(input_per_mtok=1.0, output_per_mtok=2.0))
    req = tables[REQUESTS].to_pandas()
    assert req["outcome"].tolist() == ["success", "success", "error", "timeout"]
    assert req["success"].tolist() == [True, True, False, False]
    assert req["route"].tolist() == ["m"] * 4 and req["tiers_tried"].tolist() == ["m"] * 4
    assert req["served_by"].tolist() == ["m", "m", "", ""]
    assert req["latency_ms"].tolist() == [1000.0, 2000.0, 0.0, 30000.0]
    assert req["ttft_ms"].tolist()[:2] == [100.0, 200.0] and req["ttft_ms"].isna()[2:].all()
    assert req["input_tokens"].tolist() == [100, 200, 50, 0]
    np.testing.assert_allclose(req["cost_usd"], [120e-6, 240e-6, 50e-6, 0.0])
    assert req["arrival_s"].tolist() == [0.0, 1.0, 2.0, 3.0]  # no start times: file order
    for column, value in NEUTRAL.items():
        got = req[column].iloc[0]
        assert (math.isnan(got) and math.isnan(value)) if column == "confidence" else got == value
    spans = tables[SPANS].to_pandas()
    assert spans["kind"].tolist() == ["chat"] * 4
    assert spans["http.response.status_code"].tolist() == [200, 200, 500, 0]
    assert spans["duration_ms"].tolist() == req["latency_ms"].tolist()


def test_arrivals_are_start_times_relative_to_the_first() -> None:
    t, timed = arrivals(calls_table([105.0, 100.0, 102.5, 110.0]))
    assert timed and t.tolist() == [5.0, 0.0, 2.5, 10.0]
    t, timed = arrivals(calls_table([105.0, None, 102.5, 110.0]))
    assert not timed and t.tolist() == [0.0, 1.0, 2.0, 3.0]


def test_manifest_is_marked_observed_with_sources() -> None:
    calls = Calls(calls_table(), (Source("f.json", "ab" * 32, 4),))
    tables, man = observed_run(calls, ["evalx", "import"])
    assert man["observed"] is True
    assert man["sources"] == [{"path": "f.json", "sha256": "ab" * 32, "rows": 4}]
    assert man["suite"] == "m" and man["requests"] == 4 and "schema_version" in man
    summary = tables[SUMMARY].to_pandas().set_index("route")
    assert summary.loc["all", "success_rate"] == 0.5
    assert summary.loc["all", "error_rate"] == 0.25 and summary.loc["all", "timeout_rate"] == 0.25
