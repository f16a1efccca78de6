"""The one error of a comparison, raised wherever two runs or a gate setting are unusable."""

from __future__ import annotations

from harness.errors import EvalxError


class CompareError(EvalxError):
    """Two runs cannot be compared as asked, or a gate setting is invalid."""
