"""The public face of harness.data: one __all__ naming every public name once.

Its order is ruff's (RUF022), checked by the lint session."""

from __future__ import annotations

import types

import harness.data
from harness.errors import EvalxError


def test_all_is_complete() -> None:
    public = {
        name
        for name, value in vars(harness.data).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert len(harness.data.__all__) == len(set(harness.data.__all__))
    assert set(harness.data.__all__) == public


def test_data_errors_are_user_errors() -> None:
    assert issubclass(harness.data.DataError, EvalxError)
