"""Per-session budgets: tokens and spend over a conversation's turns (sans-I/O).

A gateway sees a conversation id with each request (`RequestInfo.metadata["session"]`)
and the tokens every model result reports; it knows its own price list. That is all this
uses: a session's spend is what the stack itself observed, priced at the models' list
prices (a provider's discounts it is not told about are not counted). A request without
a session id is a session of its own.

Like the per-request token budget, a call is refused when it *could* exceed a budget:
its prompt plus its `max_tokens` reserve must fit what the session has left.
"""

from __future__ import annotations

from harness.spec import Suite
from harness.stack._effects import RequestInfo


class SessionSpend:
    """What one session has spent so far, as the stack counted it."""

    __slots__ = ("budgets", "tokens", "usd")

    def __init__(self, budgets: SessionBudgets) -> None:
        self.budgets = budgets
        self.tokens = 0
        self.usd = 0.0

    def refuses(self, model: str, input_tokens: int, reserve: int) -> str | None:
        """Which budget (`tokens`, `usd`) a call of `input_tokens` plus `reserve` output
        tokens could exceed, or None when it fits both."""
        b = self.budgets
        if b.tokens is not None and self.tokens + input_tokens + reserve > b.tokens:
            return "tokens"
        if b.usd is not None and self.usd + b.cost(model, input_tokens, reserve) > b.usd:
            return "usd"
        return None

    def charge(self, model: str, input_tokens: int, output_tokens: int) -> None:
        """Count a model result's tokens and their list price."""
        self.tokens += input_tokens + output_tokens
        self.usd += self.budgets.cost(model, input_tokens, output_tokens)


class SessionBudgets:
    """Every session's spend, created on first sight (`budgets.session_tokens`/`_usd`)."""

    def __init__(
        self, tokens: int | None, usd: float | None, prices: dict[str, tuple[float, float]]
    ) -> None:
        self.tokens = tokens
        self.usd = usd
        self.prices = prices
        self._sessions: dict[str, SessionSpend] = {}

    @classmethod
    def of_suite(cls, suite: Suite) -> SessionBudgets | None:
        """The suite's session budgets with its models' list prices; None without any."""
        b = suite.stack.budgets
        if b.session_tokens is None and b.session_usd is None:
            return None
        prices = {n: (m.price.input_per_mtok, m.price.output_per_mtok)
                  for n, m in suite.models.items()}  # fmt: skip
        return cls(b.session_tokens, b.session_usd, prices)

    def cost(self, model: str, input_tokens: int, output_tokens: int) -> float:
        """A call's cost at list price, USD."""
        p_in, p_out = self.prices.get(model, (0.0, 0.0))
        return (input_tokens * p_in + output_tokens * p_out) / 1e6

    def session(self, request: RequestInfo) -> SessionSpend:
        """The spend of the request's session (its own, without a session id)."""
        key = request.metadata.get("session") or f"request:{request.request_id}"
        spend = self._sessions.get(key)
        if spend is None:
            spend = self._sessions[key] = SessionSpend(self)
        return spend
