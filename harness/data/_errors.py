"""The one error a data reader raises, and the shape of its message."""

from __future__ import annotations

from harness.errors import EvalxError


class DataError(EvalxError):
    """Observed data (a log, a latency export, traces, an outcome table) cannot be used.

    The message is one line that says where, what and how to fix it:
    ``<file>:<where>: column <name>: <problem>; <fix>``, where ``<where>`` is a file line
    for CSV and JSON lines, ``row N`` (0-based) for Parquet, ``record N`` for a JSON array
    and ``span N`` for OTLP traces. Problems with the whole file (missing, empty, not the
    expected format, a mapped column it lacks) name the file and what was expected. The
    CLI prints the message and exits 2.
    """
