"""Compare two runs and gate a change: per-route tests of each metric, Holm-corrected.

`compare_runs` reads two run directories, checks that they can be compared (same
schema version; the same requests, when paired) and hands the requests tables to
`compare_tables`, which does the statistics and never touches the disk (benchmarks and
tests call it with tables simulated in memory).

Pairing. Two runs of one suite name and seed see the same requests and the same world
(common random numbers, DESIGN.md §1), so request i of the baseline and request i of the
candidate differ only by the change under test. Paired tests then detect far smaller
regressions than independent samples would. Paired groups follow the *baseline's* route,
so both sides of a group are the same requests. Runs that cannot be paired are compared
only when asked (`unpaired=True`), each run grouped by its own route.

Dependence. Requests of one run share queues, breakers and outages, so each group is read
in arrival order and resampled in blocks of consecutive arrivals (`block_bootstrap`, block
length `harness.intervals.block_length`); paired rates use McNemar's exact test on
discordant counts divided by their design effect (Rao-Scott); with replications on both
sides of an unpaired comparison, Welch's t-test on per-replication values. Under 100
requests a group is treated as independent requests. `TESTS` names every test.

Verdicts. Each (route, metric) named in `Gates.tolerances` is one test; the p-values of
all tests with enough data are adjusted together (Holm), so the chance of any false
alarm in a comparison stays at or below `alpha`. A test is a *regression* only when the
change is significant and larger than its tolerance in the tolerance's worse direction,
an *improvement* when it is significant and in the better direction, else *no change*.
Absolute gates (any new violation) do not depend on statistics and always apply.

Results are deterministic: every bootstrap draws from its own generator, seeded by
`Gates.seed` and the (route, metric) it serves, so a report never depends on the order
or number of the other tests.

Layout, lowest first: `_errors` (CompareError), `_metrics` (what can be tested, which way
is worse, the columns read), `_stats` (McNemar, Holm, Welch, the bootstraps; no evalx types),
`_gates` (tolerances, `Gates`, the gates file), `_loading` (run directories: manifests,
requests tables, whether two runs pair) and `_compare` (the tests, verdicts and the
`Comparison`).
"""

from harness.compare._compare import (
    TESTS,
    VERDICTS,
    AbsoluteGate,
    Comparison,
    Result,
    compare_runs,
    compare_tables,
)
from harness.compare._compare import Verdict as Verdict
from harness.compare._errors import CompareError
from harness.compare._gates import (
    DEFAULT_TOLERANCES,
    Gates,
    Tolerance,
    load_gates,
    parse_tolerance,
    parse_tolerances,
)
from harness.compare._loading import pairing_problem
from harness.compare._metrics import METRICS, PAIR_KEYS, RATES, REQUIRED_COLUMNS
from harness.compare._stats import _percentile_of_ranks as _percentile_of_ranks
from harness.compare._stats import _ranks as _ranks
from harness.compare._stats import _resampled_means as _resampled_means
from harness.compare._stats import holm, mcnemar_exact

__all__ = [
    "DEFAULT_TOLERANCES",
    "METRICS",
    "PAIR_KEYS",
    "RATES",
    "REQUIRED_COLUMNS",
    "TESTS",
    "VERDICTS",
    "AbsoluteGate",
    "CompareError",
    "Comparison",
    "Gates",
    "Result",
    "Tolerance",
    "compare_runs",
    "compare_tables",
    "holm",
    "load_gates",
    "mcnemar_exact",
    "pairing_problem",
    "parse_tolerance",
    "parse_tolerances",
]
