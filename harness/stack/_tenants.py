"""Per-tenant gateway limits: requests and tokens per minute, spend budgets (sans-I/O).

What an LLM gateway enforces per key (LiteLLM's rpm/tpm limits and budgets with a reset
period), as the reference stack applies it at admission, before it calls any model:

- `rpm` and `tpm` are token buckets that start full, hold a minute's worth and refill
  continuously (`rpm / 60` per second). A request takes one `rpm` token. `tpm` is charged
  after the fact with the tokens the stack observes in model results (a gateway cannot
  know them before the call), so its level can go below zero; a request is admitted
  while each bucket holds at least one token.
- a spend budget counts the cost the stack observed (tokens times the suite's model
  prices: a gateway knows its price list) in calendar windows of `per` seconds from
  t = 0, and admits while the current window's spend is below `usd`.

Every method is a pure function of the `now` it is given; nothing here reads a clock.
"""

from __future__ import annotations

import math
from collections.abc import Generator, Mapping
from typing import NamedTuple

from harness.spec import TenantLimits
from harness.stack._effects import Effect, Final, ModelResult, Outcome

WILDCARD = "*"
"""The `stack.tenants` key whose limits apply to every tenant not listed by name."""


class TokenBucket:
    """Up to `capacity` tokens, refilled at `rate` per second; starts full.

    `take` may overdraw (a level below zero is debt that refilling pays back first).
    """

    __slots__ = ("capacity", "level", "rate", "t")

    def __init__(self, capacity: float, rate: float) -> None:
        self.capacity = capacity
        self.rate = rate
        self.level = capacity
        self.t = 0.0

    def available(self, now: float) -> float:
        """The level at `now` (refilled since the last look; never above capacity)."""
        if now > self.t:
            self.level = min(self.capacity, self.level + (now - self.t) * self.rate)
            self.t = now
        return self.level

    def wait_s(self, now: float, need: float = 1.0) -> float:
        """Seconds from `now` until the level reaches `need` (0: it has already)."""
        short = need - self.available(now)
        return 0.0 if short <= 0 else short / self.rate

    def take(self, now: float, amount: float) -> None:
        """Remove `amount` tokens at `now`, overdrawing if need be."""
        self.available(now)
        self.level -= amount


class SpendBudget:
    """Spend allowed per calendar window of `per_s` seconds (windows start at t = 0)."""

    __slots__ = ("per_s", "spent", "usd", "window")

    def __init__(self, usd: float, per_s: float) -> None:
        self.usd = usd
        self.per_s = per_s
        self.window = 0
        self.spent = 0.0

    def _roll(self, now: float) -> None:
        w = math.floor(now / self.per_s)
        if w > self.window:
            self.window = w
            self.spent = 0.0

    def wait_s(self, now: float) -> float:
        """Seconds from `now` until spending is allowed again (0: it is now)."""
        self._roll(now)
        if self.spent < self.usd:
            return 0.0
        return max((self.window + 1) * self.per_s - now, 0.0)

    def charge(self, now: float, usd: float) -> None:
        """Count `usd` spent at `now` in the window `now` falls in."""
        self._roll(now)
        self.spent += usd


class Verdict(NamedTuple):
    """Admission: `wait_s` 0 means admitted (and counted); otherwise how long until the
    limit named by `reason` (`rpm`, `tpm` or `budget`) would admit the request."""

    wait_s: float
    reason: str = ""


ADMITTED = Verdict(0.0)


class TenantState:
    """One tenant's buckets and budget under its limits."""

    __slots__ = ("budget", "limits", "rpm", "tpm")

    def __init__(self, limits: TenantLimits) -> None:
        self.limits = limits
        self.rpm = TokenBucket(limits.rpm, limits.rpm / 60.0) if limits.rpm else None
        self.tpm = TokenBucket(limits.tpm, limits.tpm / 60.0) if limits.tpm else None
        b = limits.budget
        self.budget = SpendBudget(b.usd, b.per) if b is not None else None

    def admit(self, now: float) -> Verdict:
        """Admit one request at `now` (taking its rpm token), or say how long to wait."""
        if self.rpm is not None and (w := self.rpm.wait_s(now)) > 0:
            return Verdict(w, "rpm")
        if self.tpm is not None and (w := self.tpm.wait_s(now)) > 0:
            return Verdict(w, "tpm")
        if self.budget is not None and (w := self.budget.wait_s(now)) > 0:
            return Verdict(w, "budget")
        if self.rpm is not None:
            self.rpm.take(now, 1.0)
        return ADMITTED

    def charge(self, now: float, tokens: int, usd: float) -> None:
        """Count a model call's observed tokens and cost at `now`."""
        if self.tpm is not None:
            self.tpm.take(now, tokens)
        if self.budget is not None:
            self.budget.charge(now, usd)


class TenantGate:
    """Every tenant's state, created on first sight from its limits (or the `*` limits).

    `prices` maps a model name to its (input, output) price in USD per million tokens.
    """

    def __init__(
        self, limits: Mapping[str, TenantLimits], prices: Mapping[str, tuple[float, float]]
    ) -> None:
        self.limits = dict(limits)
        self.prices = dict(prices)
        self._states: dict[str, TenantState | None] = {}

    def state(self, tenant: str) -> TenantState | None:
        """The tenant's state, or None when no limits apply to it."""
        if tenant not in self._states:
            limits = self.limits.get(tenant, self.limits.get(WILDCARD))
            self._states[tenant] = TenantState(limits) if limits is not None else None
        return self._states[tenant]

    def cost(self, model: str, input_tokens: int, output_tokens: int) -> float:
        """What the gateway's price list says a call cost."""
        p_in, p_out = self.prices.get(model, (0.0, 0.0))
        return (input_tokens * p_in + output_tokens * p_out) / 1e6

    def metered(
        self, tenant: TenantState, gen: Generator[Effect, Outcome, Final]
    ) -> Generator[Effect, Outcome, Final]:
        """Drive `gen` unchanged, charging `tenant` with every model result coming back."""
        send = gen.send
        outcome: Outcome | None = None
        while True:
            try:
                eff = send(outcome)  # type: ignore[arg-type]
            except StopIteration as stop:
                final: Final = stop.value
                return final
            outcome = yield eff
            if isinstance(outcome, ModelResult):
                used = outcome.input_tokens + outcome.output_tokens
                spent = self.cost(outcome.model, outcome.input_tokens, outcome.output_tokens)
                tenant.charge(outcome.now, used, spent)
