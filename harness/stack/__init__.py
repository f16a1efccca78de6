"""Routing stacks and the sans-I/O effect protocol that drivers speak with them."""

from harness.stack._breaker import BreakerConfig, CircuitBreaker
from harness.stack._effects import (
    OUTCOMES,
    CallModel,
    CallTool,
    Effect,
    Final,
    Handler,
    Handoff,
    HumanResult,
    ModelResult,
    Note,
    Outcome,
    RequestInfo,
    RoutingStack,
    Tick,
    ToolResult,
    Wait,
)
from harness.stack._factory import FactoryError, make_stack
from harness.stack._reference import ReferenceStack, RetryBudget

__all__ = [
    "OUTCOMES",
    "BreakerConfig",
    "CallModel",
    "CallTool",
    "CircuitBreaker",
    "Effect",
    "FactoryError",
    "Final",
    "Handler",
    "Handoff",
    "HumanResult",
    "ModelResult",
    "Note",
    "Outcome",
    "ReferenceStack",
    "RequestInfo",
    "RetryBudget",
    "RoutingStack",
    "Tick",
    "ToolResult",
    "Wait",
    "make_stack",
]
