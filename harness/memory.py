"""Will a run fit in memory? The estimate, what the machine has, and a refusal up front.

A simulated run holds its world tape, the engine's buffers and then the Arrow tables of
every request and span at once, so its peak memory grows linearly with
`traffic.requests`. Measured (peak RSS of `evalx run`, the records written with spans):
scenarios/support.yaml 0.77 GiB at 300,000 requests and 1.29 GiB at 600,000, i.e. 0.25 GiB
of interpreter and libraries plus 1.75 GiB per million requests (4.4 spans a request);
scenarios/sessions.yaml 1.6 GiB per million (3.4 spans). `estimate` uses 1.8 GiB per
million, a little above the heaviest measured.

`check` compares the estimate with the least of what the machine can give: MemAvailable
(/proc/meminfo) or the free physical pages (`os.sysconf`), a cgroup v2 memory limit, and
an address-space limit (RLIMIT_AS) less what the process will map before its first
request (`ADDRESS_SPACE_BASE`). A run that cannot fit is refused at once (exit 2) with the
estimate and the ways out, instead of failing minutes later with an allocation error.
``EVALX_MEMORY_CHECK=0`` turns the check off (the estimate is an estimate). Should a run
still run out of memory, the CLI says so with exit 2 (`out_of_memory`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import EvalxError

if TYPE_CHECKING:
    from harness.spec import Suite

__all__ = ["BASE_BYTES", "BYTES_PER_REQUEST", "Available", "MemoryLimitError", "available",
           "check", "check_suite", "estimate", "out_of_memory"]  # fmt: skip

GIB = 1 << 30
BASE_BYTES = 300 << 20
"""Interpreter, numpy, pyarrow and pandas, before the first request (measured 0.25 GiB)."""
BYTES_PER_REQUEST = round(1.8 * GIB / 1e6)
"""Peak memory per request with spans (measured 1.6-1.75 GiB per million; see above)."""
ADDRESS_SPACE_BASE = 850 << 20
"""Address space a run maps beyond its requests' memory: libraries, thread stacks and
allocator arenas. Measured under RLIMIT_AS (support.yaml): 1.4 GiB runs 300,000 requests
but not 375,000; 2.3 GiB runs 700,000 but not 900,000."""


class MemoryLimitError(EvalxError):
    """A run would need more memory than the machine (or its limits) can give."""


@dataclass(frozen=True)
class Available:
    """Bytes this process can still use, and what sets that bound."""

    bytes: int
    source: str


def estimate(requests: int, processes: int = 1) -> int:
    """Peak bytes of `processes` concurrent runs of `requests` each, beyond this process.

    Each extra process (a pool worker) pays for its own interpreter and libraries.
    """
    return processes * requests * BYTES_PER_REQUEST + max(0, processes - 1) * BASE_BYTES


def available() -> Available | None:
    """The least of: available physical memory, a cgroup limit, RLIMIT_AS headroom.

    None when none of them can be read (the check is then skipped).
    """
    found: list[Available] = []
    meminfo = _kib_fields("/proc/meminfo")
    if "MemAvailable" in meminfo:
        found.append(Available(meminfo["MemAvailable"], "MemAvailable in /proc/meminfo"))
    else:
        pages = _sysconf("SC_AVPHYS_PAGES")
        size = _sysconf("SC_PAGE_SIZE")
        if pages is not None and size is not None:
            found.append(Available(pages * size, "free physical pages"))
    cgroup = _cgroup()
    if cgroup is not None:
        found.append(cgroup)
    limit = _address_space()
    if limit is not None:
        found.append(limit)
    return min(found, key=lambda a: a.bytes) if found else None


def check(requests: int, *, processes: int = 1, key: str = "traffic.requests") -> None:
    """Refuse (`MemoryLimitError`) `processes` runs of `requests` that cannot fit."""
    if os.environ.get("EVALX_MEMORY_CHECK", "").strip() == "0":
        return
    have = available()
    need = estimate(requests, processes)
    if have is None or need <= have.bytes:
        return
    fits = max(0, (have.bytes - max(0, processes - 1) * BASE_BYTES) // processes)
    fits = _two_digits(fits // BYTES_PER_REQUEST)
    each = f" in each of {processes} processes" if processes > 1 else ""
    raise MemoryLimitError(
        f"{key}={requests:,}: the run needs about {_gib(need)} of memory{each} "
        f"({BYTES_PER_REQUEST * 1e6 / GIB:.1f} GiB per million requests) but only "
        f"{_gib(have.bytes)} is available ({have.source}); lower {key} (about {fits:,} "
        f"fit), or run smaller worlds (--replications R --set {key}=N/R, on --executor dask "
        "to use other machines); EVALX_MEMORY_CHECK=0 skips this check"
    )


def check_suite(suite: Suite, *, processes: int = 1) -> None:
    """`check` for `processes` concurrent runs of `suite` (skipped when its requests come
    from a file or a log: their size is bounded where they are read)."""
    traffic = suite.traffic
    if processes >= 1 and traffic.file is None and traffic.log is None:
        check(traffic.requests, processes=processes)


def out_of_memory() -> MemoryLimitError:
    """What to say when a run ran out of memory after all (the estimate was too low)."""
    return MemoryLimitError(
        "ran out of memory (the estimate, "
        f"{BYTES_PER_REQUEST * 1e6 / GIB:.1f} GiB per million requests, was too low for this "
        "suite); lower traffic.requests or run smaller worlds with --replications"
    )


def _two_digits(n: int) -> int:
    """`n` rounded down to two significant digits (12,730,804 -> 12,000,000)."""
    scale: int = 10 ** max(0, len(str(n)) - 2)
    return n // scale * scale


def _gib(n: int) -> str:
    return f"{n / GIB:,.1f} GiB"


def _kib_fields(path: str) -> dict[str, int]:
    """`Name:  123 kB` lines of a /proc file, in bytes (empty where there is no /proc)."""
    try:
        text = Path(path).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError):
        return {}
    out = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if len(parts) == 2 and parts[0].isdigit() and parts[1] == "kB":
            out[name] = int(parts[0]) * 1024
    return out


def _sysconf(name: str) -> int | None:
    try:
        value = os.sysconf(name)
    except (AttributeError, ValueError, OSError):
        return None
    return int(value) if value > 0 else None


def _cgroup() -> Available | None:
    """Headroom under a cgroup v2 memory limit (containers), if one is set."""
    root = Path("/sys/fs/cgroup")
    try:
        rel = next(
            line.split(":", 2)[2]
            for line in Path("/proc/self/cgroup").read_text(encoding="utf-8").splitlines()
            if line.startswith("0::")
        )
        here = root / rel.strip().lstrip("/")
        limit = (here / "memory.max").read_text(encoding="ascii").strip()
        current = int((here / "memory.current").read_text(encoding="ascii").strip())
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    if not limit.isdigit():  # "max": no limit
        return None
    return Available(max(0, int(limit) - current), "headroom under the cgroup memory limit")


def _address_space() -> Available | None:
    """Headroom under RLIMIT_AS: the soft limit less what this process maps (VmSize)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Windows
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return None
    mapped = max(_kib_fields("/proc/self/status").get("VmSize", 0), ADDRESS_SPACE_BASE)
    return Available(max(0, soft - mapped), f"headroom under RLIMIT_AS of {_gib(soft)}")
