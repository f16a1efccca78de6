"""Loading the stack under test: the reference stack, or the user's own.

A user's stack is named in the suite as `stack.factory: "module:function"`; the function
receives the validated `Suite` and returns an object whose `handle(request)` is a
generator speaking the effect protocol (see harness.stack._effects). The harness then
evaluates it with the same world, metrics, sweeps and gates as the reference stack.
"""

from __future__ import annotations

import importlib
import sys

from harness.errors import EvalxError
from harness.spec import Suite
from harness.stack._effects import RoutingStack
from harness.stack._reference import ReferenceStack


class FactoryError(EvalxError):
    """The suite's stack factory cannot be loaded or does not build a stack."""


def make_stack(suite: Suite) -> RoutingStack:
    """The stack a suite asks for."""
    spec = suite.stack.factory
    if spec is None:
        return ReferenceStack(suite)
    module_name, func_name = spec.split(":")
    added = [p for p in suite.stack.factory_path if p not in sys.path]
    sys.path[:0] = added
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise FactoryError(
            f"stack.factory: cannot import {module_name!r} ({err}); searched "
            f"{', '.join(suite.stack.factory_path)} and the Python path"
        ) from None
    except Exception as err:  # the user's module failing as it loads
        raise FactoryError(
            f"stack.factory: importing {module_name!r} raised {type(err).__name__}: {err}"
        ) from None
    finally:
        for p in added:
            if p in sys.path:
                sys.path.remove(p)
    factory = getattr(module, func_name, None)
    if not callable(factory):
        raise FactoryError(f"stack.factory: {module_name!r} has no function {func_name!r}")
    try:
        stack = factory(suite)
    except Exception as err:  # not a factory (e.g. os:system), or one that fails
        raise FactoryError(
            f"stack.factory: {spec}(suite) raised {type(err).__name__}: {_short(err)}; a "
            "factory takes the Suite and returns an object with handle(request)"
        ) from None
    if not callable(getattr(stack, "handle", None)):
        raise FactoryError(
            f"stack.factory: {spec} returned {type(stack).__name__}, which has no handle(request)"
        )
    return stack  # type: ignore[no-any-return]


def _short(err: Exception) -> str:
    text = str(err).strip().splitlines()
    first = text[0] if text else ""
    return first if len(first) <= 200 else first[:197] + "..."
