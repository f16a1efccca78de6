"""A repeated tool call is recognised exactly as comparing the calls' JSON recognises it."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from harness.stack._reference import _call_key

_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from([0.0, -0.0, 1.0, 2.5]),
    st.sampled_from(["", "1", "true", "A123", "ä"]), st.builds(object),
)  # fmt: skip
_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=2), max_leaves=4)
_ARGS = st.one_of(
    st.none(), st.dictionaries(st.sampled_from(["id", "op", "ref", "1"]), _VALUES, max_size=3)
)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.sampled_from(["lookup", "refund"]), _ARGS)
def test_the_key_is_the_calls_json(tool: str, args: Any) -> None:
    assert _call_key(tool, args) == tool + json.dumps(args, sort_keys=True, default=str)


def test_calls_differ_as_their_json_does() -> None:
    assert _call_key("lookup", {"ref": "A1", "n": 2}) == _call_key("lookup", {"n": 2, "ref": "A1"})
    assert _call_key("lookup", {"n": 1}) != _call_key("lookup", {"n": True})
    assert _call_key("lookup", {"1": "a"}) == _call_key("lookup", {1: "a"})
    assert _call_key("lookup", None) == "lookupnull"
