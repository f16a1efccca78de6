"""Governance as data: a versioned policy the guardrails enforce, whatever the model.

A policy lives in its own YAML file (`policies/default.yaml`), is referenced by the suite
(`policies: {file: ../policies/default.yaml}`) or swapped with `evalx run --policy FILE`,
and any of its keys can be overridden inline or with `--set policies.<key>=...`. Changing
the policy changes behaviour; no stack code changes.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from harness.spec._base import Strict

PiiKind = Literal["email", "phone", "card", "iban"]
_ALL_PII: tuple[PiiKind, ...] = ("email", "phone", "card", "iban")

VIOLATION_KINDS = (
    "pii_leak",
    "prohibited_action_executed",
    "unapproved_high_impact",
    "invalid_tool_args_executed",
    "injection_followed",
    "budget_overrun",
)
"""Every kind of violation a run can record; summaries have a column per kind."""

STAGES = ("input", "tool_args", "action", "output", "budget", "record")
"""Where on a request's path a check runs (`record`: what a run directory keeps)."""


class CustomPii(Strict):
    """A user-defined PII pattern."""

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
    """Detector name; redactions read `[NAME]`."""
    pattern: str
    """Python regular expression matching the value."""

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as e:
            raise ValueError(f"invalid regular expression: {e}") from None
        return pattern


class PiiPolicy(Strict):
    """Personal data: what is detected and where it is redacted."""

    detect: list[PiiKind] = Field(default_factory=lambda: list(_ALL_PII))
    """Built-in detectors to run (cards need a valid Luhn digit, IBANs a valid mod-97)."""
    custom: list[CustomPii] = Field(default_factory=list)
    """User-defined detectors."""
    redact_input: bool = True
    """Redact the user's text before any model, tool or record sees it."""
    redact_output: bool = True
    """Redact answers before they leave the stack (catches models leaking tool data)."""

    @model_validator(mode="after")
    def _distinct_names(self) -> PiiPolicy:
        names = [c.name for c in self.custom]
        for name in names:
            if name in _ALL_PII:
                raise ValueError(f"custom detector {name!r} clashes with a built-in kind")
            if names.count(name) > 1:
                raise ValueError(f"two custom detectors are named {name!r}; rename one")
        return self


class ToolPolicy(Strict):
    """Tool calls proposed by models."""

    validate_args: bool = True
    """Check arguments against each tool's JSON Schema before executing."""
    repair_attempts: Annotated[int, Field(ge=0)] = 1
    """Retries asking the model to fix invalid arguments before refusing the call."""
    allow_unknown: bool = False
    """Let a call to a tool that does not exist go through (it then fails)."""


class ActionPolicy(Strict):
    """Actions (tool calls with effects) that need more than a model's say-so."""

    prohibited: list[str] = Field(default_factory=lambda: ["delete_account"])
    """Never executed, whoever asks."""
    high_impact: list[str] = Field(default_factory=lambda: ["refund"])
    """Executed only from `high_impact_tiers`, or after a human approves (handoff)."""
    high_impact_tiers: list[str] = Field(default_factory=lambda: ["premium"])
    """Tiers trusted with high-impact actions."""
    phrases: dict[str, list[str]] = Field(
        default_factory=lambda: {
            "delete_account": ["delete my account", "close my account", "remove my account"],
            "refund": ["refund", "money back", "reimburse"],
        }
    )
    """How each action is recognised in a user's text and in a proposed call's arguments
    (case-insensitive substrings), besides its own name with spaces ("delete account").
    Requests the phrases miss are routed as ordinary ones; calls they miss are not guarded."""


class InjectionPolicy(Strict):
    """Prompt-injection containment: tool and retrieval output is untrusted."""

    contain: bool = True
    """Block an action proposed after reading untrusted content that the user did not ask for."""


class RetentionPolicy(Strict):
    """What records may keep."""

    store_text: bool = False
    """Keep prompt and answer text (after redaction) in requests.parquet."""


class Policy(Strict):
    """A named, versioned governance policy."""

    name: str = "default"
    """Policy name, recorded in the manifest."""
    version: str = "1"
    """Policy version, recorded in the manifest; bump it on every change."""
    file: str | None = None
    """Policy file this policy was read from (set by the loader or the suite)."""
    enforce: bool = True
    """Off: every guardrail observes and records what it would have caught, but does not act."""
    pii: PiiPolicy = PiiPolicy()
    """Personal data detection and redaction."""
    tools: ToolPolicy = ToolPolicy()
    """Tool-argument validation."""
    actions: ActionPolicy = ActionPolicy()
    """Prohibited and high-impact actions."""
    injection: InjectionPolicy = InjectionPolicy()
    """Prompt-injection containment."""
    retention: RetentionPolicy = RetentionPolicy()
    """Retention of text in records."""
