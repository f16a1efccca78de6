"""load_runs over a hive-laid folder of runs, and DUCKDB_QUERY against the summaries."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from harness.dataset import DUCKDB_QUERY, DatasetError, find_runs, load_runs
from harness.run import simulate, write
from harness.spec import load_suite

SUITE = Path(__file__).parents[2] / "scenarios" / "support.yaml"
THRESHOLD = "stack.escalation.confidence_threshold"
RUNS = {"r1": (1, []), "r2": (2, []), "r3": (3, [f"{THRESHOLD}=0.7"])}


def make_run(out: Path, seed: int, overrides: list[str]) -> None:
    loaded = load_suite(SUITE, ["traffic.requests=800", f"seed={seed}", *overrides])
    write(out, loaded, simulate(loaded.suite), out.name.removeprefix("run="), ["test"])


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    for rid, (seed, overrides) in RUNS.items():
        make_run(root / "suite=support" / f"run={rid}", seed, overrides)
    return root


def test_rows_and_run_columns(root: Path) -> None:
    runs = load_runs(root)
    counts = runs.manifests.set_index("run")["requests"]
    assert list(counts.index) == ["r1", "r2", "r3"]
    assert len(runs.requests) == counts.sum() == 2400
    assert runs.requests.groupby("run").size().to_dict() == counts.to_dict()
    assert runs.manifests["seed"].tolist() == [1, 2, 3]
    assert (runs.requests["suite"] == "support").all()
    assert runs.requests["seed"].dtype == np.int64
    assert set(runs.requests["policy"]) == {"default"}
    spans = sum(pq.read_metadata(f).num_rows for f in root.glob("**/spans.parquet"))
    assert len(runs.spans) == spans
    assert list(runs.spans.columns[:3]) == ["suite", "run", "request_id"]


def test_only_varying_parameters_become_columns(root: Path) -> None:
    runs = load_runs(root)
    assert runs.parameters == [THRESHOLD]
    col = runs.requests[THRESHOLD]
    assert col.dtype == np.float64
    by_run = runs.requests.groupby("run")[THRESHOLD].unique()
    assert by_run["r3"].tolist() == [0.7]
    assert by_run["r1"].tolist() == by_run["r2"].tolist() != [0.7]
    assert "traffic.requests" not in runs.requests  # the same in every run
    assert list(runs.requests.columns[:5]) == ["suite", "run", "seed", "policy", THRESHOLD]


def test_summaries_have_one_row_per_route_and_all(root: Path) -> None:
    runs = load_runs(root, spans=False)
    assert runs.spans.empty
    for rid, rows in runs.summaries.groupby("run"):
        routes = runs.requests.loc[runs.requests["run"] == rid, "route"].nunique()
        assert len(rows) == routes + 1
        assert rows["route"].iloc[-1] == "all"
        assert rows[THRESHOLD].nunique() == 1


def test_explicit_parameters(root: Path) -> None:
    runs = load_runs(root, parameters=["traffic.requests", "seed"])
    assert runs.parameters == ["traffic.requests"]
    assert (runs.requests["traffic.requests"] == 800).all()
    assert runs.requests["traffic.requests"].dtype == np.int64
    with pytest.raises(DatasetError, match=r"did you mean traffic\.requests"):
        load_runs(root, parameters=["traffic.request"])


def test_any_layout_and_partial_dirs(root: Path, tmp_path: Path) -> None:
    shutil.copytree(root / "suite=support" / "run=r1", tmp_path / "nested" / "a")
    shutil.copytree(root / "suite=support" / "run=r2", tmp_path / ".b.x.partial")
    runs = load_runs(tmp_path)
    assert runs.manifests[["suite", "run"]].values.tolist() == [["support", "r1"]]
    assert runs.parameters == []


def test_errors(tmp_path: Path, root: Path) -> None:
    with pytest.raises(DatasetError, match="no run directories found"):
        load_runs(tmp_path)
    with pytest.raises(DatasetError, match="not a directory"):
        load_runs(tmp_path / "missing")
    shutil.copytree(root, tmp_path / "one")
    shutil.copytree(root, tmp_path / "two")
    with pytest.raises(DatasetError, match="also at"):
        load_runs(tmp_path)


def test_duckdb_query_reproduces_the_all_row(root: Path) -> None:
    got = duckdb.sql(DUCKDB_QUERY.format(root=root)).df().set_index("run")
    runs = load_runs(root, spans=False)
    want = runs.summaries[runs.summaries["route"] == "all"].set_index("run")
    assert got.index.tolist() == want.index.tolist()
    assert (got["suite"] == "support").all()
    assert got["requests"].tolist() == want["requests"].tolist()
    assert got["success_rate"].tolist() == want["success_rate"].tolist()
    # Sums of floats agree to the last bits only: the summary sums pairwise (numpy),
    # DuckDB's fsum with compensation.
    np.testing.assert_allclose(got["cost_per_request_usd"], want["cost_per_request_usd"], 1e-12)
    for rid, rows in runs.requests.groupby("run"):
        p95 = np.percentile(rows["latency_ms"].to_numpy(), 95)
        assert got.loc[rid, "p95_latency_ms"] == pytest.approx(p95, rel=1e-9)
        assert want.loc[rid, "p95_latency_ms"] == p95


def test_duckdb_sees_hive_columns(root: Path) -> None:
    rel = duckdb.sql(
        f"SELECT suite, run, count(*) AS n FROM read_parquet('{root}/**/requests.parquet', "
        "hive_partitioning = true) GROUP BY ALL ORDER BY run"
    )
    df: pd.DataFrame = rel.df()
    assert df.values.tolist() == [
        ["support", "r1", 800],
        ["support", "r2", 800],
        ["support", "r3", 800],
    ]


@pytest.fixture(scope="module")
def mixed(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`root`'s support runs, a run of another suite beside them, and the README's
    governance runs written with `--out runs/policy/old|new` (no hive folders)."""
    mixed = tmp_path_factory.mktemp("mixed")
    shutil.copytree(root, mixed, dirs_exist_ok=True)
    other = SUITE.with_name("policy-edge-cases.yaml")
    for out, flags in (("suite=policy-edge-cases/run=p1", []), ("policy/old", []),
                       ("policy/new", ["policies.actions.high_impact_tiers=[]"])):  # fmt: skip
        loaded = load_suite(other, ["traffic.requests=200", *flags])
        write(mixed / out, loaded, simulate(loaded.suite), Path(out).name, ["test"])
    return mixed


def test_parameters_vary_within_a_suite_not_between_suites(mixed: Path) -> None:
    runs = load_runs(mixed, spans=False)
    assert runs.manifests["suite"].value_counts().to_dict() == {
        "support": 3, "policy-edge-cases": 3
    }  # fmt: skip
    # description, faults, models ... differ between the suites, not within one
    assert sorted(runs.parameters) == ["policies.actions.high_impact_tiers", THRESHOLD]


def test_duckdb_query_reads_the_hive_runs_beside_other_layouts(mixed: Path) -> None:
    with pytest.raises(duckdb.Error, match="Hive partition mismatch"):
        duckdb.sql(DUCKDB_QUERY.format(root=mixed).replace("suite=*/run=*", "**")).df()
    got = duckdb.sql(DUCKDB_QUERY.format(root=mixed)).df()
    assert got[["suite", "run", "requests"]].values.tolist() == [
        ["policy-edge-cases", "p1", 200],
        ["support", "r1", 800],
        ["support", "r2", 800],
        ["support", "r3", 800],
    ]


def test_find_runs_looks_up_from_the_notebook_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EVALX_RUNS", raising=False)
    (tmp_path / "runs").mkdir()
    (tmp_path / "reports" / "deep").mkdir(parents=True)
    assert find_runs(tmp_path / "reports" / "deep") == (tmp_path / "runs").resolve()
    monkeypatch.chdir(tmp_path / "reports")
    assert find_runs() == (tmp_path / "runs").resolve()
    monkeypatch.setenv("EVALX_RUNS", "elsewhere")
    assert find_runs() == Path("elsewhere")
    monkeypatch.delenv("EVALX_RUNS")
    (tmp_path / "runs").rmdir()
    if any((p / "runs").is_dir() for p in tmp_path.parents):
        return  # a runs/ folder above the temporary folder: nothing left to test
    with pytest.raises(DatasetError, match=r"no runs/ folder here or above; .* set EVALX_RUNS"):
        find_runs(tmp_path / "reports")
