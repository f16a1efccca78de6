"""The `evalx` command. The only place that turns results into exit codes.

Commands: init, schema, validate, run, record, compare, sweep, report, export-traces,
view; learning the world from data: fit latency|traffic|quality (a suite fragment with
provenance and a fit report), import (observed calls as a run directory) and backtest (fit
on part of the data, predict the rest, judge the prediction).

Exit codes: 0 success, 1 a threshold, gate or back-test failed, 2 bad input or usage (one
line, no traceback), 3 internal error (a harness bug: traceback). Heavy imports happen
inside commands so that `evalx --help` starts fast.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer
import typer.core

from harness import __version__
from harness.errors import EvalxError
from harness.view import MAX_DETAILS, MAX_ROWS

if TYPE_CHECKING:
    from rich.console import Console

    from harness.backtest import Split
    from harness.data._dist import FitKind
    from harness.phases import PhaseReport
    from harness.run import RunResult
    from harness.spec import Suite

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3
WIDTH = 100
"""Columns the terminal output fits by default (--wide: as many as the tables need)."""

_METAVARS = {
    "baseline": "RUN_DIR", "bucket_s": "SECONDS", "cassettes": "DIR", "columns": "FIELD=COL,...",
    "concurrency": "N", "confirm": "K", "format_": "FORMAT", "gates": "FILE", "grid": "FILE",
    "id_": "COLUMN", "json_": "FILE", "junit": "FILE", "kind": "KIND", "markdown": "FILE",
    "model": "NAME", "models": "NAME=NAME,...", "out": "PATH", "price_in": "USD",
    "price_out": "USD", "replications": "R", "score": "COLUMN", "split": "time|random",
    "success": "CONDITION", "target": "TARGET", "task_class": "COLUMN", "train": "SHARE",
}  # fmt: skip
"""Words for option values in help, by parameter name (else by type: N, X, PATH, TEXT)."""


class _Group(typer.core.TyperGroup):
    """evalx's command groups: help names every value with a word (FILE, N, KEY=VALUE)
    instead of typer's Python type (<path>, <int>, <list[str]>). A metavar given where an
    option is made is kept; arguments are named in capitals (RUN_DIR); flags take none."""

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        for param in command.params if command is not None else []:
            if param.metavar is not None or getattr(param, "is_flag", False):
                continue
            if isinstance(param, typer.core.TyperArgument):
                param.metavar = str(param.name).rstrip("_").upper()
            elif isinstance(param, typer.core.TyperOption):
                kind = {"int": "N", "float": "X", "str": "TEXT"}.get(param.bare_type(), "PATH")
                param.metavar = _METAVARS.get(str(param.name), kind)
        return command


app = typer.Typer(
    name="evalx",
    help="Production-like scenario evaluation for multi-model LLM routing stacks.",
    cls=_Group,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

SuiteArg = Annotated[
    Path, typer.Argument(help="Suite YAML file.", show_default=False, metavar="SUITE")
]
PolicyOpt = Annotated[
    Path | None,
    typer.Option(
        "--policy",
        help="Policy file to run under, instead of the suite's policies.file.",
        show_default=False,
        metavar="FILE",
    ),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="Override a suite value: --set stack.escalation.confidence_threshold=0.7 "
        "(repeatable).",
        show_default=False,
        metavar="KEY=VALUE",
    ),
]
WideOpt = Annotated[
    bool,
    typer.Option(
        "--wide",
        help="Print every column at full precision; by default tables fit 100 columns.",
    ),
]
ExecutorOpt = Annotated[
    str | None,
    typer.Option(
        "--executor",
        help="inline, process or dask (default: a process pool when --workers > 1, else inline).",
        show_default=False,
        metavar="inline|process|dask",
    ),
]
WorkersOpt = Annotated[
    int | None,
    typer.Option(
        help="Workers for process or dask (default: 2 with --executor process or dask, else 1).",
        show_default=False,
        metavar="N",
    ),
]
SchedulerOpt = Annotated[
    str | None,
    typer.Option(
        help="Join an existing Dask cluster (tcp://host:port).",
        show_default=False,
        metavar="URL",
    ),
]

SafeOpt = Annotated[
    bool,
    typer.Option(
        "--safe",
        help="Refuse suites that would import or run user code (stack.factory, tool "
        "functions, python assertions): for suites from untrusted changes.",
    ),
]


def _version(value: bool) -> None:
    if value:
        from harness._native import STATUS  # which engine path runs: compiled or pure, and why

        typer.echo(f"evalx {__version__}\nengine: {STATUS}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show version.")
    ] = False,
) -> None:
    """Production-like scenario evaluation for multi-model LLM routing stacks."""


def _fail(err: EvalxError) -> typer.Exit:
    typer.echo(f"error: {err.one_line()}", err=True)
    return typer.Exit(EXIT_USAGE)


@app.command()
def validate(
    suite: SuiteArg, set_: SetOpt = None, policy: PolicyOpt = None, safe: SafeOpt = False
) -> None:
    """Check a suite without running it.

    Checks everything a run will use (files it names, JSON Schemas, the stack factory,
    tool functions, assertions) without calling a model; prints every problem as
    file:line: key: problem; hint.
    """
    from harness.errors import SpecError
    from harness.preflight import preflight
    from harness.spec import load_suite
    from harness.thresholds import compile_thresholds

    try:
        loaded = load_suite(suite, set_ or [], policy)
        compile_thresholds(loaded)
        s = loaded.suite
        n = preflight(loaded, safe=safe).requests
    except SpecError as err:
        for problem in err.problems:
            typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    except EvalxError as err:
        raise _fail(err) from None
    from harness.spec import advisories
    from harness.spec._load import locate_key

    for key, message in advisories(s):
        where, line = locate_key(key, file=str(loaded.path), lines=loaded.lines,
                                 overridden=loaded.overrides, files=loaded.files)  # fmt: skip
        at = f"{where}:{line}" if line is not None else where
        typer.echo(f"warning: {at}: {'.'.join(map(str, key))}: {message}", err=True)
    typer.echo(
        f"{suite}: ok ({s.name}: {n} requests, {len(s.models)} models, "
        f"{len(s.tools)} tools, {len(s.faults)} faults; policy {s.policies.name} "
        f"{s.policies.version})"
    )


@app.command()
def init(
    path: Annotated[
        Path,
        typer.Argument(
            help="Suite file to write (*.yaml), or a folder to write suite.yaml into.",
            metavar="PATH",
        ),
    ] = Path("."),
    template: Annotated[
        str,
        typer.Option(help="Starter suite: support, two-tier, live or log-replay.", metavar="NAME"),
    ] = "support",
) -> None:
    """Write a starter suite that runs as written.

    A commented suite from a template, the files it names and suite.schema.json beside
    it; never overwrites a file (exit 2).
    """
    from harness.templates import TEMPLATES, write_template

    try:
        written = write_template(template, path)
    except EvalxError as err:
        raise _fail(err) from None
    for p in written:
        typer.echo(f"wrote {p}")
    suite = written[0]
    typer.echo(f"next: evalx validate {suite} && evalx run {suite}")
    summary = TEMPLATES[template].summary
    typer.echo(f"({template}: {summary})")


@app.command()
def schema() -> None:
    """Print the JSON Schema of suite files.

    For editor completion: save it (evalx schema > suite.schema.json) and name it in a
    suite's first line: # yaml-language-server: $schema=suite.schema.json
    """
    from harness.spec import suite_schema_text

    typer.echo(suite_schema_text(), nl=False)


@app.command()
def run(
    suite: SuiteArg,
    out: Annotated[
        str | None,
        typer.Option(
            help="Run directory or fsspec URL, e.g. s3://bucket/runs/x (default: "
            "runs/suite=<name>/run=<id>/).",
            show_default=False,
            metavar="DIR|URL",
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(help="Override the suite's seed.", show_default=False, metavar="N"),
    ] = None,
    set_: SetOpt = None,
    policy: PolicyOpt = None,
    replay: Annotated[
        Path | None,
        typer.Option(
            help="Replay recorded cassettes from this directory (offline, no key).",
            show_default=False,
            metavar="DIR",
        ),
    ] = None,
    live_: Annotated[
        bool,
        typer.Option(
            "--live",
            help="Run against the models' endpoints (exit 2 when the suite names none).",
        ),
    ] = False,
    pace: Annotated[
        str,
        typer.Option(
            help="Live: asap (as fast as --concurrency allows) or real (each request sent at "
            "its arrival time: an open-loop load test).",
            metavar="asap|real",
        ),
    ] = "asap",
    concurrency: Annotated[
        int, typer.Option(help="Live: requests in flight at once.", min=1, metavar="N")
    ] = 8,
    report: Annotated[
        bool, typer.Option(help="Write report.md and its figures into the run directory.")
    ] = True,
    otlp_json: Annotated[
        Path | None,
        typer.Option(
            "--otlp-json",
            help="Also write the spans as OTLP JSON to this file.",
            show_default=False,
            metavar="FILE",
        ),
    ] = None,
    replications: Annotated[
        int | None,
        typer.Option(
            help="Run R independent worlds (seeds derived from the suite's).",
            show_default=False,
            metavar="R",
        ),
    ] = None,
    executor_: ExecutorOpt = None,
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
    resume: Annotated[
        bool, typer.Option(help="Reuse the replications an interrupted run finished.")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Print only the run directory.")
    ] = False,
    safe: SafeOpt = False,
    wide: WideOpt = False,
) -> None:
    """Run a suite and write its run directory.

    Simulates the suite in virtual time and writes requests, spans and summary as
    Parquet, with report.md. Suites whose models name real endpoints (provider: openai)
    run live, or offline from cassettes with --replay. --executor, --workers, --scheduler
    and --resume apply to --replications.
    """  # fmt: skip
    from rich.console import Console

    from harness.metrics import tenant_summary
    from harness.preflight import preflight
    from harness.report import (
        phase_table,
        route_table,
        tenant_table,
        thresholds_block,
        violations_table,
    )
    from harness.run import run_id
    from harness.spec import load_suite
    from harness.storage import check_out, is_url
    from harness.thresholds import as_records, compile_thresholds, evaluate

    overrides = [*(set_ or []), *([f"seed={seed}"] if seed is not None else [])]
    console = Console(stderr=True)
    if replications is not None:
        if out is not None and is_url(out):
            raise _fail(EvalxError("--replications writes its parts locally: give a local --out"))
        _replicated(suite, overrides, policy, replications, Path(out) if out else None,
                    executor_, workers, scheduler, resume, quiet, safe, wide)  # fmt: skip
        return
    given = [name for name, value in (("--executor", executor_), ("--workers", workers),
                                      ("--scheduler", scheduler)) if value is not None]  # fmt: skip
    given += ["--resume"] if resume else []
    if given:
        raise _fail(EvalxError(f"{', '.join(given)}: only with --replications R (a single run "
                               "is one process); add --replications or drop them"))  # fmt: skip
    if otlp_json is not None and out is not None and is_url(out):
        raise _fail(EvalxError("--otlp-json reads the run back: give a local --out"))
    try:
        loaded = load_suite(suite, overrides, policy)
        objectives = compile_thresholds(loaded)
        if pace not in ("asap", "real"):
            raise EvalxError(f"--pace {pace}: choose asap or real")
        if live_ and not _is_live(loaded.suite):
            raise EvalxError(f"--live: {suite} names no endpoint (a model with provider: "
                             "openai or anthropic and a base_url)")  # fmt: skip
        live = live_ or replay is not None or _is_live(loaded.suite)
        preflight(loaded, safe=safe, full=False, live=live, keys=live and replay is None)
        rid = run_id(loaded)
        target: Path | str = default_run_dir(loaded.suite.name, rid)
        if out is not None:
            target = out if is_url(out) else Path(out)
        check_out(target)
        if live:
            from harness.live import live_run

            result = live_run(loaded.suite, replay=replay, concurrency=concurrency,
                              pace=pace)  # fmt: skip
        else:
            result = _simulate(loaded.suite, console, quiet)
        outcomes = evaluate(objectives, result.requests)
        phases = _write_run(target, loaded, result, rid, as_records(outcomes), report,
                            phases=not quiet)  # fmt: skip
        if otlp_json is not None:
            from harness.otlp import write_otlp

            write_otlp(Path(target), otlp_json)
    except EvalxError as err:
        raise _fail(err) from None
    failed = any(not o.passed for o in outcomes)
    if quiet:
        typer.echo(str(target))
        if failed:
            typer.echo("thresholds failed: " + ", ".join(
                f"{o.threshold.key} {o.threshold.expression}" for o in outcomes if not o.passed
            ), err=True)  # fmt: skip
            raise typer.Exit(EXIT_FAILED)
        return
    s = loaded.suite
    out_console = _stdout(wide)
    pol = loaded.policy()
    out_console.print(
        _fill([f"[bold]{s.name}[/bold]", f"seed {s.seed}", f"{result.trace.n:,} requests",
               f"{result.sim_seconds:,.0f} s simulated in {result.wall_seconds:.2f} s wall",
               f"policy {pol['name']} {pol['version']} ({pol['hash'][:8]}"
               f"{'' if s.policies.enforce else ', not enforced'})"], out_console.width),
        highlight=False,
    )  # fmt: skip
    summary = result.summary.to_pandas()
    out_console.print(route_table(summary, wide=wide))
    if phases is not None and len(phases.table) > 1:
        out_console.print(phase_table(phases.table, wide=wide))
    tenants = tenant_summary(result.requests)
    if tenants is not None:
        out_console.print(tenant_table(tenants, wide=wide))
    governance = violations_table(summary, wide=wide)
    if governance is not None:
        out_console.print(governance)
    if outcomes:
        out_console.print(thresholds_block(outcomes), highlight=False)
    out_console.print(f"run directory: {target}")
    if failed:
        raise typer.Exit(EXIT_FAILED)


@app.command()
def record(
    suite: SuiteArg,
    cassettes: Annotated[
        Path, typer.Option(help="Directory for the cassettes and timings.", show_default=False)
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            help="Run directory (default: runs/suite=<name>/run=<id>/).", show_default=False
        ),
    ] = None,
    set_: SetOpt = None,
    concurrency: Annotated[int, typer.Option(help="Requests in flight at once.")] = 8,
) -> None:
    """Run a suite live and record its HTTP calls.

    Every HTTP interaction with the suite's endpoints is recorded (vcrpy), for offline
    replays with evalx run --replay.
    """
    from harness.live import live_run
    from harness.preflight import preflight
    from harness.run import run_id, write
    from harness.spec import load_suite
    from harness.storage import check_out
    from harness.thresholds import as_records, compile_thresholds, evaluate

    try:
        loaded = load_suite(suite, set_ or [])
        objectives = compile_thresholds(loaded)
        preflight(loaded, full=False, live=True, keys=True)  # before the first paid call
        rid = run_id(loaded)
        target = out if out is not None else default_run_dir(loaded.suite.name, rid)
        check_out(target)
        result = live_run(loaded.suite, record=cassettes, concurrency=concurrency)
        outcomes = evaluate(objectives, result.requests)
        write(target, loaded, result, rid, ["evalx", *sys.argv[1:]], as_records(outcomes))
    except EvalxError as err:
        raise _fail(err) from None
    typer.echo(f"recorded {result.trace.n} requests into {cassettes}; run directory: {target}")


@app.command()
def compare(
    baseline: Annotated[Path, typer.Argument(help="Baseline run directory.", show_default=False)],
    candidate: Annotated[Path, typer.Argument(help="Candidate run directory.", show_default=False)],
    gates: Annotated[
        Path | None,
        typer.Option(help="Gates file: tolerances per metric, alpha, ...", show_default=False),
    ] = None,
    junit: Annotated[
        Path | None, typer.Option(help="Write a JUnit XML report here.", show_default=False)
    ] = None,
    markdown: Annotated[
        Path | None, typer.Option(help="Write a Markdown report here.", show_default=False)
    ] = None,
    json_: Annotated[
        Path | None,
        typer.Option("--json", help="Write a JSON report here.", show_default=False),
    ] = None,
    unpaired: Annotated[
        bool,
        typer.Option(help="Compare runs of different suites or seeds as independent samples."),
    ] = False,
    wide: WideOpt = False,
) -> None:
    """Compare two runs; exit 1 on a regression or a failed gate.

    Per route and metric. Runs of the same suite and seed are paired request by request
    (McNemar, paired bootstrap); a regression must exceed its tolerance and be significant
    after Holm. The Markdown report is also appended to $GITHUB_STEP_SUMMARY when that is
    set.
    """
    import os

    from harness.compare import Gates, compare_runs, load_gates
    from harness.errors import OutputError
    from harness.integrity import read_manifest
    from harness.report import (
        compare_json,
        compare_junit,
        compare_lines,
        compare_markdown,
        compare_table,
        compare_verdict,
    )
    from harness.storage import check_file_out

    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    try:  # every output is checked before any work, so no PASS is printed before a failure
        for option, path in (("--junit", junit), ("--markdown", markdown), ("--json", json_)):
            if path is not None:
                check_file_out(path, option)
        if summary:
            check_file_out(Path(summary), "$GITHUB_STEP_SUMMARY", append=True)
        rules = load_gates(gates) if gates is not None else Gates()
        result = compare_runs(baseline, candidate, rules, unpaired=unpaired)
        thresholds = read_manifest(candidate).get("thresholds") or []
    except EvalxError as err:
        raise _fail(err) from None
    console = _stdout(wide)
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
    for line in compare_lines(result):
        console.print(line, highlight=False, markup=False)
    console.print(compare_table(result, wide=wide))
    for g in result.absolute:
        mark = "[green]✓[/green]" if g.passed else "[red]✗[/red]"
        console.print(f"{mark} {g.name}: {g.message}", highlight=False)
    failed_thresholds = [t for t in thresholds if not t["passed"]]
    for t in failed_thresholds:
        console.print(f"[red]✗[/red] threshold {t['key']} {t['expression']}", highlight=False)
    failed = result.failed or bool(failed_thresholds)
    md = compare_markdown(result, thresholds)
    reports = {junit: compare_junit(result, thresholds), markdown: md,
               json_: compare_json(result, thresholds)}  # fmt: skip
    try:
        for path, text in reports.items():
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
        if summary:
            with open(summary, "a", encoding="utf-8") as fh:
                fh.write(md)
    except OSError as exc:  # changed since it was checked
        where = exc.filename or summary
        raise _fail(OutputError(f"{where}: cannot write ({exc.strerror}); "
                                "choose another path")) from None  # fmt: skip
    verdict = compare_verdict(result, len(failed_thresholds))
    console.print(f"[{'red' if failed else 'green'}]{verdict}[/]", highlight=False)
    if failed:
        raise typer.Exit(EXIT_FAILED)


@app.command()
def sweep(
    suite: SuiteArg,
    grid: Annotated[
        Path | None,
        typer.Option(
            help="Grid file (param: [values] or start:stop:step); default: the suite's sweep.grid.",
            show_default=False,
        ),
    ] = None,
    set_: SetOpt = None,
    policy: PolicyOpt = None,
    confirm: Annotated[
        int | None,
        typer.Option(
            help="Best screened settings to confirm with full runs (default: sweep.confirm, 5).",
            show_default=False,
        ),
    ] = None,
    replications: Annotated[
        int,
        typer.Option(
            help="Replications per finalist (seeds as evalx run --replications); constraints "
            "must hold at their 95% confidence bound."
        ),
    ] = 5,
    gates: Annotated[
        Path | None,
        typer.Option(
            help="Also apply CI's gates (an evalx compare gates file) as constraints.",
            show_default=False,
        ),
    ] = None,
    baseline: Annotated[
        Path | None,
        typer.Option(
            help="Run directory the gates compare against (default: the suite as it stands).",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help=f"Output directory (default: {SWEEP_DIR}/).",
            show_default=False,
            metavar="DIR",
        ),
    ] = None,
    workers: WorkersOpt = None,
    executor_: ExecutorOpt = None,
    scheduler: SchedulerOpt = None,
    target: Annotated[
        str | None,
        typer.Option(
            help="Also find the threshold for a traffic share, e.g. "
            '"share{served_by:premium}=0.2".',
            show_default=False,
        ),
    ] = None,
) -> None:
    """Tune routing: screen a grid, confirm, recommend.

    The grid is screened on the world tape and the best settings confirmed over
    replications. A setting is feasible when every threshold holds at its 95% confidence
    bound across the replications, at the suite's seed, and (with --gates or --baseline)
    passes the gates as evalx compare would. Exit 0 with a recommendation, 1 when none is
    feasible.
    """  # fmt: skip
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from harness.compare import load_gates
    from harness.memory import check_suite
    from harness.run import run_id
    from harness.spec import load_suite
    from harness.spec._load import load_suite_data
    from harness.storage import check_out, write_run
    from harness.sweep import recommendation, run_sweep, sweep_frame, target_share

    console = _stdout()
    err_console = Console(stderr=True)
    try:
        if replications < 1:
            raise EvalxError(f"--replications must be at least 1, got {replications}")
        rules = load_gates(gates) if gates is not None else None
        loaded = load_suite(suite, set_ or [], policy)
        axes = dict(loaded.suite.sweep.grid)
        if grid is not None:
            axes, _ = load_suite_data(grid, "grid file")
        target_dir = out or default_sweep_dir(loaded.suite.name, run_id(loaded))
        check_out(target_dir)
        kind, workers = _workers(executor_, workers)
        check_suite(loaded.suite, processes=max(1, _local_processes(kind, workers, scheduler,
                                                                    workers)))  # fmt: skip
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      console=err_console, transient=True,
                      disable=not err_console.is_terminal) as bar:  # fmt: skip
            tasks: dict[str, Any] = {}

            def progress(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(stage, total=total)
                bar.update(tasks[stage], completed=done)

            best = confirm if confirm is not None else loaded.suite.sweep.confirm
            result = run_sweep(
                loaded, axes, confirm=best, replications=replications, gates=rules,
                baseline=baseline, executor=_executor(kind, workers, scheduler),
                policy=str(policy) if policy else None, progress=progress,
            )  # fmt: skip
            if target is not None:
                result.target = target_share(loaded, target, str(policy) if policy else None)
        frame = sweep_frame(result)
        rec = recommendation(result, str(suite))
        files: dict[str, str | bytes] = {
            "recommendation.json": json.dumps(rec, indent=2, default=str) + "\n"
        }
        png = _frontier(frame, result)
        if png is not None:
            files["frontier.png"] = png
        import pyarrow as pa

        write_run(target_dir, {"sweep.parquet": pa.Table.from_pandas(frame, preserve_index=False)},
                  {"sweep": loaded.suite.name, "objective": loaded.suite.sweep.objective,
                   "grid": {k: str(v) for k, v in axes.items()}}, files)  # fmt: skip
    except EvalxError as err:
        raise _fail(err) from None
    _print_sweep(console, loaded, result, frame, rec)
    console.print(f"sweep directory: {target_dir}", highlight=False)
    if not rec["recommended"]:
        raise typer.Exit(EXIT_FAILED)


def _print_sweep(console: Console, loaded: Any, result: Any, frame: Any, rec: Any) -> None:
    """The sweep's terminal output: what ran, the best settings, the finalists with their
    intervals, the recommendation's constraints and gate, warnings; 100 columns wide."""
    from harness.report import gaps_table, sweep_table
    from harness.sweep import gaps

    params = list(result.settings[0].params)
    how = "screened on the tape" if result.tape else "screened by one full run each"
    n = len(result.finalists)
    console.print(f"[bold]{loaded.suite.name}[/bold] sweep: {len(result.settings)} settings "
                  f"{how}; {n} finalist{'s' if n != 1 else ''} x {result.replications} "
                  "replications", highlight=False)  # fmt: skip
    console.print(f"  + one run each at the suite's seed {result.seed}: {result.runs} full "
                  "runs", highlight=False)  # fmt: skip
    console.print(sweep_table(frame, params, loaded.suite.sweep.objective))
    for note in result.notes:
        console.print(f"note: {note}", highlight=False)
    shown = ("success_rate", "cost_per_request_usd", "p95_latency_ms", "p99_latency_ms")
    gap = gaps_table([g for g in gaps(result) if g["metric"] in shown])
    if gap is not None:
        console.print(gap)
    console.print(_finalists_table(result, rec, params))
    for f in rec["finalists"]:
        if f["why_not"]:
            label = result.settings[f["setting"]].label()
            why = "; ".join(f"{r['constraint']}: {r['detail']}" for r in f["why_not"])
            console.print(f"  ✗ {label}: {why}", highlight=False)
    shown_rejected = rec["gate_rejected"][:5]
    for g in shown_rejected:
        label = result.settings[g["setting"]].label()
        failures = g["gate"]["failures"]
        more = f" (+{len(failures) - 1} more)" if len(failures) > 1 else ""
        first = f"{failures[0]['check']}: {failures[0]['detail']}"
        console.print(f"  ✗ {label}: gate at seed {result.seed}: {first}{more}",
                      highlight=False)  # fmt: skip
    if len(rec["gate_rejected"]) > len(shown_rejected):
        console.print(f"  ✗ ... and {len(rec['gate_rejected']) - len(shown_rejected)} more "
                      "settings that failed the gates (recommendation.json: gate_rejected)",
                      highlight=False)  # fmt: skip
    if rec["target"]:
        t = rec["target"]
        console.print(f"target {t['target']}: threshold {t['threshold']} gives share "
                      f"{t['share']:.3f}", highlight=False)  # fmt: skip
        console.print(f"  apply: {t['set']}", highlight=False)
    gating = rec["gating"]
    if rec["recommended"]:
        r = rec["recommended"]
        console.print(f"[green]recommended[/green]: {result.settings[r['setting']].label()}",
                      highlight=False)  # fmt: skip
        console.print(_constraints_table(r["constraints"], result.replications))
        if gating:
            g = r["gate"]
            how = "paired" if g["paired"] else f"unpaired: {g['unpaired_because']}"
            console.print(f"  gates {gating['gates']} vs {gating['baseline']} ({how}): pass",
                          highlight=False)  # fmt: skip
        for off in rec["switched_off"]:
            console.print(f"[yellow]note:[/yellow] {off}", highlight=False)
        console.print(f"  apply: {r['command']}", highlight=False)
    else:
        console.print(f"[red]no feasible setting[/red]; binding: {rec['binding_constraint']}",
                      highlight=False)  # fmt: skip
        if rec["closest"]:
            console.print(f"  closest: {rec['closest']['command']}", highlight=False)
    for warning in rec["warnings"]:
        console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)


def _cell(metrics: dict[str, Any], key: str, scale: float, fmt: str) -> str:
    """A confirmed metric as `mean ±half-width`, or `mean [low, high]` when the interval was
    clipped to the metric's range (scaled; 100 for percent)."""
    mean, low, high = (metrics.get(k) for k in (key, f"{key}_ci_low", f"{key}_ci_high"))
    if mean is None:
        return "-"
    if low is None or high is None:
        return format(scale * mean, fmt)
    import math

    m, lo, hi = scale * mean, scale * low, scale * high
    if math.isclose(hi - m, m - lo, rel_tol=1e-6, abs_tol=1e-12):
        return f"{m:{fmt}} ±{hi - m:{fmt}}"
    return f"{m:{fmt}} [{lo:{fmt}}, {hi:{fmt}}]"


def _finalists_table(result: Any, rec: Any, params: list[str]) -> Any:
    """Every finalist: means over the replications with 95% intervals, and its verdict."""
    from rich import box
    from rich.table import Table

    from harness.report import SWEEP_LEGEND
    from harness.sweep import short_names

    title = f"Finalists: mean ±95% CI over {result.replications} replications, route all"
    caption = f"\\[low, high] where an interval is clipped to its range\n{SWEEP_LEGEND}"
    table = Table(title=title, title_justify="left", header_style="bold", box=box.SIMPLE_HEAD,
                  caption=caption, caption_justify="left", min_width=len(title))  # fmt: skip
    table.add_column("")
    names = short_names(params)
    for p in params:
        table.add_column(names[p], justify="right", min_width=min(len(names[p]), 24))
    for name in ("success %", "cost/success $", "p95 s", "feasible"):
        table.add_column(name, justify="right")
    for f in rec["finalists"]:
        m = f["metrics"] or {}
        sid = f["setting"]
        mark = "★" if sid == result.recommended else ("◆" if sid == result.current else "")
        values = [str(v) for v in result.settings[sid].params.values()]
        table.add_row(mark, *values, _cell(m, "success_rate", 100, ".1f"),
                      _cell(m, "cost_per_success_usd", 1, ".4f"),
                      _cell(m, "p95_latency_ms", 1e-3, ".1f"),
                      "yes" if not f["why_not"] else "no")  # fmt: skip
    return table


def _constraints_table(checks: Any, replications: int) -> Any:
    """The recommendation's constraints: mean, margin with its interval, P(next seed)."""
    from rich import box
    from rich.table import Table

    from harness.units import number

    title = (f"  constraints over {replications} replications: margin > 0 is slack; "
             "P = chance it holds at another seed")  # fmt: skip
    table = Table(title=title, title_justify="left", header_style="bold", box=box.SIMPLE_HEAD,
                  min_width=len(title))  # fmt: skip
    table.add_column("")
    table.add_column("constraint", min_width=42, overflow="fold")
    for name in ("mean", "margin [95% CI]", "P"):
        table.add_column(name, justify="right", overflow="fold")
    for c in checks:
        text = f"{c['key']} {c['expression']}"
        if len(text) > 42:
            text = f"{c['key']}\n  {c['expression']}"
        if c["margin"] is None:
            margin = "-"
        elif c["margin_low"] is None:
            margin = number(c["margin"], sign=True)
        else:
            margin = (f"{number(c['margin'], sign=True)} [{number(c['margin_low'], sign=True)}, "
                      f"{number(c['margin_high'], sign=True)}]")  # fmt: skip
        mean = "-" if c["value"] is None else number(c["value"])
        table.add_row("✓" if c["passed"] else "✗", text, mean, margin, f"{c['p_holds']:.3f}")
    return table


def _frontier(frame: Any, result: Any) -> bytes | None:
    """frontier.png as bytes, or None when matplotlib is missing."""
    import tempfile

    try:
        from harness.plots import frontier_png
    except ImportError:  # pragma: no cover - matplotlib is a dependency
        return None
    from harness.sweep import frontier_points

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "frontier.png"
        frontier_png(frontier_points(result, frame), path, recommended=result.recommended,
                     current=result.current)  # fmt: skip
        return path.read_bytes()


def _replicated(
    suite: Path,
    overrides: list[str],
    policy: Path | None,
    replications: int,
    out: Path | None,
    kind: str | None,
    workers: int | None,
    scheduler: str | None,
    resume: bool,
    quiet: bool,
    safe: bool = False,
    wide: bool = False,
) -> None:
    """`evalx run --replications R`: R worlds on an executor, reduced in unit order."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from harness.executor import UnitError
    from harness.memory import check_suite
    from harness.preflight import preflight
    from harness.replicate import replicate, replication_warnings
    from harness.report import replications_table
    from harness.run import run_id
    from harness.spec import load_suite

    err_console = Console(stderr=True)
    try:
        loaded = load_suite(suite, overrides, policy)
        preflight(loaded, safe=safe, full=False)
        target = out if out is not None else default_run_dir(loaded.suite.name, run_id(loaded))
        kind, workers = _workers(kind, workers)
        ex = _executor(kind, workers, scheduler)
        check_suite(loaded.suite, processes=_local_processes(kind, workers, scheduler,
                                                             replications))  # fmt: skip
        with Progress(TextColumn("replications"), BarColumn(), MofNCompleteColumn(),
                      console=err_console, transient=True,
                      disable=not err_console.is_terminal) as bar:  # fmt: skip
            task = bar.add_task("replications", total=replications)
            result = replicate(str(suite), overrides, str(policy) if policy else None,
                               replications, target, executor=ex, resume=resume,
                               progress=lambda d, t: bar.update(task, completed=d))  # fmt: skip
    except EvalxError as err:
        raise _fail(err) from None
    except UnitError as err:
        typer.echo(f"error: {err}; finished replications are kept: rerun with --resume",
                   err=True)  # fmt: skip
        raise typer.Exit(EXIT_INTERNAL) from None
    if quiet:
        typer.echo(str(target))
        return
    console = _stdout(wide)
    m = result["manifest"]
    console.print(f"[bold]{m['suite']}[/bold]  {m['replications']} replications "
                  f"(seeds from {m['seed']})  executor {kind}", highlight=False)  # fmt: skip
    console.print(replications_table(result["across"], result["pooled"], wide=wide))
    for warning in replication_warnings(result["across"]):
        console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)
    console.print(f"run directory: {target}")


def _stdout(wide: bool = False) -> Console:
    """The console tables print on: a terminal's width (COLUMNS when set) up to 100
    columns; 100 when the output goes to a file or a pipe; with --wide, as wide as the
    tables need."""
    from rich.console import Console

    tty = sys.stdout.isatty()
    if wide:
        return Console(width=None if tty else 1000, soft_wrap=True)
    return Console(width=min(Console().width, WIDTH) if tty else WIDTH)


def _fill(parts: list[str], width: int) -> str:
    """Parts joined by two spaces, a new line where the next part would pass `width`: a
    line breaks between phrases, never inside one. Rich markup does not count."""
    from rich.text import Text

    lines = [parts[0]]
    for part in parts[1:]:
        line = f"{lines[-1]}  {part}"
        if Text.from_markup(line).cell_len <= width:
            lines[-1] = line
        else:
            lines.append(part)
    return "\n".join(lines)


def _workers(kind: str | None, workers: int | None) -> tuple[str, int]:
    """The executor and worker count asked for, with the defaults run and sweep share: a
    process pool when --workers > 1, else inline; 2 workers for process or dask."""
    if workers is not None and workers < 1:
        raise EvalxError(f"--workers must be at least 1, got {workers}")
    if kind is None:
        kind = "process" if workers is not None and workers > 1 else "inline"
    if workers is None:
        workers = 1 if kind == "inline" else 2
    return kind, workers


def _local_processes(kind: str, workers: int, scheduler: str | None, units: int) -> int:
    """How many runs an executor holds in this machine's memory at once (0: elsewhere)."""
    if kind == "inline":
        return 1
    if kind == "dask" and scheduler is not None:
        return 0
    return max(1, min(workers, units))


def _executor(kind: str, workers: int, scheduler: str | None) -> Any:
    """The executor asked for on the command line; a bad kind is a usage error."""
    from harness.executor import executor

    if kind not in ("inline", "process", "dask"):
        raise EvalxError(f"--executor {kind!r}: use inline, process or dask")
    if scheduler is not None and kind != "dask":
        raise EvalxError("--scheduler needs --executor dask")
    return executor(kind, workers, scheduler)


def _write_run(
    target: Path | str,
    loaded: Any,
    result: RunResult,
    rid: str,
    thresholds: list[dict[str, Any]],
    report: bool,
    phases: bool = False,
) -> PhaseReport | None:
    """The run directory, atomically: tables, manifest and (optionally) the report; the
    run read by phase when the report or `phases` asks for it."""
    from harness.phases import SPAN_COLUMNS_READ
    from harness.report import plot_files, run_markdown, run_phases
    from harness.run import manifest
    from harness.storage import REQUESTS, SESSIONS, SPANS, SUMMARY, write_run

    man = manifest(loaded, result, rid, ["evalx", *sys.argv[1:]], thresholds)
    extra: dict[str, str | bytes] = {}
    by_phase = None
    if report or phases:
        requests = result.requests.to_pandas()
        names = [c for c in SPAN_COLUMNS_READ if c in result.spans.column_names]
        by_phase = run_phases(requests, result.spans.select(names).to_pandas(), man)
    if report:
        plots = plot_files(requests, man)
        extra = {**plots, "report.md": run_markdown(result.summary.to_pandas(), man,
                                                    {n: n for n in plots}, by_phase)}  # fmt: skip
    tables = {REQUESTS: result.requests, SPANS: result.spans, SUMMARY: result.summary,
              SESSIONS: result.sessions}  # fmt: skip
    write_run(target, tables, man, extra)
    return by_phase


@app.command("report")
def report_(
    run_dir: Annotated[Path, typer.Argument(help="A run directory.", show_default=False)],
    format_: Annotated[
        str, typer.Option("--format", help="md or html (one self-contained file).")
    ] = "md",
) -> None:
    """Write a run's report.md or report.html.

    report.md comes with its figures; report.html is one self-contained file. The run's
    tables are verified against the manifest's hashes first (a damaged run is
    refused, exit 2); the figures are views and are redrawn when any is missing.
    """
    from harness.errors import OutputError
    from harness.integrity import read_manifest, read_table, verify
    from harness.phases import SPAN_COLUMNS_READ
    from harness.report import PLOTS, plot_files, run_html, run_markdown, run_phases
    from harness.storage import REQUESTS, SESSIONS, SPANS, SUMMARY, check_file_out

    if format_ not in ("md", "html"):
        raise _fail(EvalxError(f"--format {format_!r}: use md or html"))
    files = [run_dir / n for n in ("manifest.json", REQUESTS, SUMMARY)]
    missing = [f.name for f in files if not f.exists()]
    if missing:
        raise _fail(EvalxError(f"{run_dir}: not a run directory (missing {', '.join(missing)})"))
    path = run_dir / f"report.{format_}"
    try:
        check_file_out(path, "report")
        man = read_manifest(run_dir)
        verify(run_dir, man, [n for n in (SPANS, SESSIONS) if (run_dir / n).exists()])
        requests = read_table(run_dir, REQUESTS, man).to_pandas()
        summary = read_table(run_dir, SUMMARY, man).to_pandas()
        spans = None
        if (run_dir / SPANS).exists():
            table = read_table(run_dir, SPANS, man)
            spans = table.select([c for c in SPAN_COLUMNS_READ if c in table.column_names])
        phases = run_phases(requests, None if spans is None else spans.to_pandas(), man)
        images = {n: (run_dir / n).read_bytes() for n in PLOTS if (run_dir / n).exists()}
        if len(images) < len(PLOTS):
            images = plot_files(requests, man)
            for name, body in images.items():
                _atomic_write(run_dir / name, body)
        if format_ == "md":
            _atomic_write(path, run_markdown(summary, man, {n: n for n in images},
                                             phases).encode())  # fmt: skip
        else:
            _atomic_write(path, run_html(summary, man, images, phases).encode())
    except EvalxError as err:
        raise _fail(err) from None
    except OSError as exc:
        raise _fail(OutputError(f"{exc.filename or run_dir}: cannot write ({exc.strerror}); "
                                "make the run directory writable")) from None  # fmt: skip
    typer.echo(str(path))


@app.command("export-traces")
def export_traces(
    run_dir: Annotated[Path, typer.Argument(help="A run directory.", show_default=False)],
    out: Annotated[
        Path | None,
        typer.Option(help="Output file (default: RUN_DIR/traces.otlp.json).", show_default=False),
    ] = None,
) -> None:
    """Write a run's spans as OTLP JSON traces.

    One trace a request, with OpenTelemetry GenAI attribute names.
    """
    from harness.integrity import read_manifest
    from harness.otlp import write_otlp

    try:
        path = write_otlp(run_dir, out or run_dir / "traces.otlp.json")
    except EvalxError as err:
        raise _fail(err) from None
    if read_manifest(run_dir).get("requests") == 0:
        typer.echo("note: the run has no requests; the trace file holds no spans", err=True)
    typer.echo(str(path))


@app.command()
def view(
    run_dir: Annotated[
        Path, typer.Argument(help="A run directory (the baseline, with two).", show_default=False)
    ],
    candidate: Annotated[
        Path | None,
        typer.Argument(
            help="A second run: the candidate, paired with the first request by "
            "request when both have the same suite and seed.",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Write the viewer here (default: RUN_DIR/view.html; with two runs "
            "RUN_DIR2/view-vs-<RUN_DIR's name>.html; with --serve only if given).",
            show_default=False,
        ),
    ] = None,
    serve: Annotated[
        bool,
        typer.Option(
            "--serve",
            help="Serve the viewer on 127.0.0.1 until Ctrl-C; it loads any request's "
            "spans on demand.",
        ),
    ] = False,
    port: Annotated[
        int | None,
        typer.Option(
            help="Port for --serve (implies it); 0 picks a free one.",
            min=0,
            max=65535,
            show_default="0",
        ),
    ] = None,
    rows: Annotated[
        int,
        typer.Option(
            help="Most requests in the table; past it, every notable request is kept "
            "and the rest thinned evenly.",
            min=1,
        ),
    ] = MAX_ROWS,
    details: Annotated[
        int,
        typer.Option(
            help="Most requests whose spans and text a file embeds (changed, then "
            "notable ones first).",
            min=0,
        ),
    ] = MAX_DETAILS,
) -> None:
    """Look inside a run in a browser.

    A table of its requests and each request's timeline. One self-contained HTML file
    (no network): sort and filter the requests, click one to see every span as a
    waterfall, with prompt and answer when the run retained them. With two runs of one
    suite and seed, a tab lists the requests whose outcome changed.
    """
    from harness.errors import OutputError
    from harness.storage import check_file_out
    from harness.view import make_server, open_run, payload, render

    serve = serve or port is not None
    dirs = [run_dir] if candidate is None else [run_dir, candidate]
    name = run_dir.resolve().name
    default = candidate / f"view-vs-{name}.html" if candidate else run_dir / "view.html"
    target = out if out is not None else None if serve else default
    try:
        if target is not None:
            check_file_out(target, "--out")
        runs = [open_run(d) for d in dirs]
        if target is not None:
            page = render(payload(runs, max_rows=rows, max_details=details))
            target.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(target, page.encode("utf-8"))
    except EvalxError as err:
        raise _fail(err) from None
    except OSError as exc:
        raise _fail(OutputError(f"--out {target}: cannot write ({exc.strerror}); choose "
                                "another path")) from None  # fmt: skip
    if target is not None:
        typer.echo(str(target))
    if not serve:
        return
    page = render(payload(runs, max_rows=rows, max_details=details, served=True))
    try:
        server = make_server(runs, page, port or 0)
    except OSError as exc:
        raise _fail(OutputError(f"--port {port or 0}: cannot listen on 127.0.0.1 "
                                f"({exc.strerror}); choose another port")) from None  # fmt: skip
    typer.echo(f"serving {server.url} (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


# --------------------------------------------------------------------------- learn from data

fit_app = typer.Typer(
    cls=_Group,
    help="Learn latency, traffic or quality from observed data.\n\nEach writes a suite "
    "fragment with its provenance and a fit report.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(fit_app, name="fit")

CallFilesArg = Annotated[
    list[Path],
    typer.Argument(help="Observed calls: LLMPerf JSON, OTLP JSON or a table.", show_default=False),
]
CallFormatOpt = Annotated[str, typer.Option("--format", help="llmperf, otlp or csv.")]
ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        help="Model name (LLMPerf: default the file stem; otherwise picks one model).",
        show_default=False,
    ),
]
CallColumnsOpt = Annotated[
    str | None,
    typer.Option(
        "--columns",
        help="csv only: field=COLUMN,... (latency_ms=dur,ttft_ms=first,output_tokens=n,...).",
        show_default=False,
    ),
]
PriceInOpt = Annotated[float, typer.Option("--price-in", help="USD per million input tokens.")]
PriceOutOpt = Annotated[float, typer.Option("--price-out", help="USD per million output tokens.")]


def _pairs(text: str | None, option: str) -> dict[str, str] | None:
    """`a=b,c=d` as a dict (None for None); EvalxError naming the option when malformed."""
    if text is None:
        return None
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, eq, value = part.partition("=")
        if not eq or not key.strip() or not value.strip():
            raise EvalxError(f"{option} {text!r}: write key=value pairs separated by commas")
        out[key.strip()] = value.strip()
    return out


def _command() -> str:
    return " ".join(["evalx", *sys.argv[1:]])


def _read_calls(files: list[Path], format_: str, model: str | None, columns: str | None) -> Any:
    from harness.data import read_calls

    return read_calls(files, format=format_, model=model, columns=_pairs(columns, "--columns"))


def _write_fit(fit: Any, out: Path) -> tuple[Path, Path]:
    """The fragment and its report, written into a temporary folder beside `out` and moved
    into place only when all of them are complete."""
    import shutil
    import tempfile

    from harness.errors import OutputError
    from harness.fit_report import write_fit_report

    if out.suffix not in (".yaml", ".yml"):
        raise OutputError(f"--out {out}: name the fragment file, e.g. fit.yaml")
    if not out.parent.is_dir():
        raise OutputError(f"--out {out}: folder {out.parent} does not exist; create it first")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.stem}.", suffix=".partial", dir=out.parent))
    try:
        fit.write(tmp / out.name)
        write_fit_report(fit, tmp / out.name)
        for f in sorted(tmp.iterdir()):
            f.replace(out.parent / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out, out.with_suffix(".md")


def _fit_summary(fit: Any, paths: tuple[Path, Path]) -> None:
    typer.echo(f"fitted {fit.kind} on {fit.provenance.rows_used} rows of "
               f"{len(fit.provenance.sources)} file(s)")  # fmt: skip
    for line in fit.summary():
        typer.echo(f"  {line}")
    for c in fit.components():
        typer.echo(f"  {c.gof_line()}")
    typer.echo(f"fragment: {paths[0]}\nreport:   {paths[1]}")


@fit_app.command("latency")
def fit_latency_(
    files: CallFilesArg,
    out: Annotated[Path, typer.Option(help="Fragment to write (fit.yaml).", show_default=False)],
    format_: CallFormatOpt = "llmperf",
    model: ModelOpt = None,
    kind: Annotated[str, typer.Option(help="auto, lognormal or empirical.")] = "auto",
    columns: CallColumnsOpt = None,
) -> None:
    """Fit each model's latency and error rate.

    Token-aware (time to first token plus per-token time) when ttft and tokens exist.
    """
    from harness.data import fit_latency

    try:
        if kind not in ("auto", "lognormal", "empirical"):
            raise EvalxError(f"--kind {kind!r}: use auto, lognormal or empirical")
        calls = _read_calls(files, format_, model, columns)
        try:
            fit = fit_latency(calls.table, model if format_ != "llmperf" else None,
                              kind=cast("FitKind", kind),
                              sources=calls.sources, command=_command())  # fmt: skip
        except ValueError as err:
            raise EvalxError(f"{', '.join(map(str, files))}: {err}") from None
        paths = _write_fit(fit, out)
    except EvalxError as err:
        raise _fail(err) from None
    _fit_summary(fit, paths)


@fit_app.command("traffic")
def fit_traffic_(
    log: Annotated[Path, typer.Argument(help="Request log (CSV, JSON lines, Parquet).")],
    columns: Annotated[
        str,
        typer.Option(
            help="field=COLUMN,...: timestamp (required), input_tokens, output_tokens, "
            "task_class, ...",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path, typer.Option(help="Fragment to write (traffic.yaml).", show_default=False)
    ],
    format_: Annotated[
        str | None,
        typer.Option(
            "--format", help="csv, jsonl or parquet (default: by suffix).", show_default=False
        ),
    ] = None,
    bucket_s: Annotated[
        float | None,
        typer.Option(
            "--bucket-s",
            help="Bucket width for rates and spikes (default: auto).",
            show_default=False,
        ),
    ] = None,
    sort: Annotated[bool, typer.Option(help="Sort the log by timestamp first.")] = False,
) -> None:
    """Fit arrivals, spikes and token sizes from a request log.

    The arrival rate, its spikes, and token sizes per task class.
    """
    from harness.data import fit_traffic, read_log

    try:
        mapping = _pairs(columns, "--columns") or {}
        if "timestamp" not in mapping:
            raise EvalxError("--columns: map timestamp=COLUMN; traffic is fitted from arrivals")
        data = read_log(log, format=format_, columns=mapping, sort=sort)
        try:
            fit = fit_traffic(data.table, bucket_s, command=_command(),
                              sources=[data.source])  # fmt: skip
        except ValueError as err:
            raise EvalxError(f"{log}: {err}") from None
        paths = _write_fit(fit, out)
    except EvalxError as err:
        raise _fail(err) from None
    _fit_summary(fit, paths)


@fit_app.command("quality")
def fit_quality_(
    table: Annotated[Path, typer.Argument(help="Outcome table: one score per prompt and model.")],
    success: Annotated[
        str, typer.Option(help="Success condition on the score, e.g. '>= 1.1'.", show_default=False)
    ],
    out: Annotated[
        Path, typer.Option(help="Fragment to write (quality.yaml).", show_default=False)
    ],
    id_: Annotated[str, typer.Option("--id", help="Prompt id column.")] = "id",
    model: Annotated[str, typer.Option("--model", help="Model column.")] = "model",
    score: Annotated[str, typer.Option("--score", help="Score column.")] = "score",
    task_class: Annotated[
        str | None,
        typer.Option(
            "--task-class", help="Task class column (per-class rates).", show_default=False
        ),
    ] = None,
    models: Annotated[
        str | None,
        typer.Option(
            help="suite_name=table_name,... (default: every model, own name).", show_default=False
        ),
    ] = None,
    format_: Annotated[
        str | None,
        typer.Option(
            "--format", help="csv, jsonl or parquet (default: by suffix).", show_default=False
        ),
    ] = None,
) -> None:
    """Fit per-class success per model from an outcome table.

    The fragment also points world.outcomes at the table.
    """
    import os

    from harness.data import fit_quality, read_outcomes

    try:
        data = read_outcomes(table, id=id_, model=model, score=score, task_class=task_class,
                             format=format_)  # fmt: skip
        columns = {"id": id_, "model": model, "score": score}
        if task_class is not None:
            columns["task_class"] = task_class
        rel = os.path.relpath(table.resolve(), out.resolve().parent)
        try:
            fit = fit_quality(data.table, success, _pairs(models, "--models"), path=rel,
                              columns=columns, command=_command(),
                              sources=[data.source])  # fmt: skip
        except ValueError as err:
            raise EvalxError(f"{table}: {err}") from None
        paths = _write_fit(fit, out)
    except EvalxError as err:
        raise _fail(err) from None
    _fit_summary(fit, paths)


@app.command("import")
def import_(
    files: CallFilesArg,
    out: Annotated[Path, typer.Option(help="Run directory to write.", show_default=False)],
    format_: CallFormatOpt = "llmperf",
    model: ModelOpt = None,
    columns: CallColumnsOpt = None,
    price_in: PriceInOpt = 0.0,
    price_out: PriceOutOpt = 0.0,
    report: Annotated[bool, typer.Option(help="Write report.md and its figures.")] = True,
) -> None:
    """Turn observed calls into a run directory.

    The run is marked observed, for compare and report. One request and one chat span
    per call; compare it with a simulation using `evalx compare OBSERVED SIMULATED
    --unpaired`.
    """
    from harness.observed import Prices, observed_run
    from harness.storage import check_out, write_run

    prices = Prices(price_in, price_out)
    try:
        check_out(out)
        calls = _read_calls(files, format_, model, columns)
        tables, man = observed_run(calls, ["evalx", *sys.argv[1:]], prices)
        extra: dict[str, str | bytes] = {}
        if report:
            from harness.report import plot_files, run_markdown, run_phases

            requests = tables["requests.parquet"].to_pandas()
            spans = tables["spans.parquet"].to_pandas() if "spans.parquet" in tables else None
            plots = plot_files(requests, man)
            body = run_markdown(tables["summary.parquet"].to_pandas(), man, {n: n for n in plots},
                                run_phases(requests, spans, man))  # fmt: skip
            extra = {**plots, "report.md": body}
        write_run(out, tables, man, extra)
    except EvalxError as err:
        raise _fail(err) from None
    typer.echo(f"imported {calls.table.num_rows} observed calls from "
               f"{len(calls.sources)} file(s): {out}")  # fmt: skip


@app.command()
def backtest(
    files: CallFilesArg,
    format_: CallFormatOpt = "llmperf",
    model: ModelOpt = None,
    columns: CallColumnsOpt = None,
    split: Annotated[str, typer.Option(help="time (start time, else file order) or random.")] = (
        "time"
    ),
    train: Annotated[float, typer.Option(help="Share of the calls to fit on.")] = 0.5,
    seed: Annotated[int, typer.Option(help="Seed of the random split and the simulation.")] = 0,
    tolerance: Annotated[
        float, typer.Option(help="Relative tolerance beyond the observed value's interval.")
    ] = 0.2,
    kind: Annotated[str, typer.Option(help="auto, lognormal or empirical.")] = "auto",
    price_in: PriceInOpt = 0.0,
    price_out: PriceOutOpt = 0.0,
    out: Annotated[
        Path | None,
        typer.Option(
            help="Write backtest.md, backtest.json and fit.yaml here.", show_default=False
        ),
    ] = None,
) -> None:
    """Fit on part of observed calls, predict the rest.

    Simulates the held-out calls and judges the prediction. Exit 1 when a metric's
    prediction lies outside the observed value's 95% interval widened by the tolerance
    (rates: by tolerance x the rarer side, at least 0.01).
    """
    from harness.backtest import backtest as run_backtest
    from harness.backtest import write_backtest
    from harness.observed import Prices
    from harness.storage import check_out

    try:
        if kind not in ("auto", "lognormal", "empirical"):
            raise EvalxError(f"--kind {kind!r}: use auto, lognormal or empirical")
        if split not in ("time", "random"):
            raise EvalxError(f"--split {split!r}: use time or random")
        if out is not None:
            check_out(out)
        calls = _read_calls(files, format_, model, columns)
        sources = [{"path": s.path, "sha256": s.sha256, "rows": s.rows} for s in calls.sources]
        result = run_backtest(calls.table, model=model if format_ != "llmperf" else None,
                              split=cast("Split", split), train=train, seed=seed,
                              tolerance=tolerance, kind=cast("FitKind", kind),
                              prices=Prices(price_in, price_out), sources=sources)  # fmt: skip
        if out is not None:
            write_backtest(result, out)
    except EvalxError as err:
        raise _fail(err) from None
    for line in result.lines():
        typer.echo(line)
    if out is not None:
        typer.echo(f"written: {out / 'backtest.md'}, {out / 'backtest.json'}, {out / 'fit.yaml'}")
    if not result.passed:
        raise typer.Exit(EXIT_FAILED)


def _atomic_write(path: Path, body: bytes) -> None:
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_bytes(body)
    tmp.replace(path)


def default_run_dir(suite: str, rid: str) -> Path:
    """runs/suite=<name>/run=<id>: a folder of runs reads as one hive-partitioned dataset."""
    return Path("runs") / f"suite={suite}" / f"run={rid}"


SWEEP_DIR = "runs/suite=<name>/sweep=<id>"
"""Where a sweep writes without --out (`default_sweep_dir`), as its help says."""


def default_sweep_dir(suite: str, rid: str) -> Path:
    """runs/suite=<name>/sweep=<id>, beside the suite's runs."""
    return Path("runs") / f"suite={suite}" / f"sweep={rid}"


def _is_live(suite: Suite) -> bool:
    return any(m.provider != "sim" for m in suite.models.values())


def _simulate(suite: Suite, console: Console, quiet: bool) -> RunResult:
    """Run with a progress bar when the run is long enough to want one; refuse first a run
    that cannot fit in memory (harness.memory)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from harness.memory import check_suite
    from harness.run import simulate

    check_suite(suite)
    n = suite.traffic.requests
    if quiet or n < 50_000 or not console.is_terminal:
        return simulate(suite)
    with Progress(
        TextColumn("simulating"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=console, transient=True,
    ) as bar:  # fmt: skip
        task = bar.add_task("run", total=n)
        return simulate(suite, lambda done: bar.update(task, completed=done))


def main() -> None:
    """Console entry point: usage errors exit 2 (click's rule), bugs print a traceback, exit 3."""
    try:
        app()  # standalone: exits with the command's code, 2 for usage errors
    except EvalxError as err:
        typer.echo(f"error: {err.one_line()}", err=True)
        sys.exit(EXIT_USAGE)
    except MemoryError:  # past the up-front estimate (harness.memory): the user's to size
        from harness.memory import out_of_memory

        typer.echo(f"error: {out_of_memory().one_line()}", err=True)
        sys.exit(EXIT_USAGE)
    except Exception:
        import traceback

        traceback.print_exc()
        typer.echo("evalx: internal error (a bug in evalx); please report it", err=True)
        sys.exit(EXIT_INTERNAL)
