"""A custom router evaluated by evalx: cheapest first, one jump to the strongest tier.

It speaks evalx's effect protocol: `handle(request)` is a generator that yields effects
(`CallModel`, `CallTool`, `Wait`, `Note`) and receives outcomes (`ModelResult`,
`ToolResult`, `Tick`), and returns a `Final`. It reads no clock and no random generator:
time comes in outcomes (`.now`), so the same code runs in simulation or live.

Policy of this router: answer on the cheapest tier; if the answer's confidence is below
`stack.escalation.confidence_threshold`, ask the strongest tier once; on any failure,
hand off to a human. No classifier, no retries, no tools: simple on purpose.
"""

from __future__ import annotations

from collections.abc import Generator

from harness.spec import Suite
from harness.stack import CallModel, Effect, Final, ModelResult, Note, Outcome, RequestInfo


class CheapThenStrong:
    """One instance serves a whole run; per-request state lives in the generator."""

    def __init__(self, suite: Suite) -> None:
        tiers = suite.stack.tiers
        by_tier = {t: [n for n, m in suite.models.items() if m.tier == t] for t in tiers}
        self.cheap = (tiers[0], by_tier[tiers[0]][0])
        self.strong = (tiers[-1], by_tier[tiers[-1]][0])
        self.threshold = suite.stack.escalation.confidence_threshold
        self.timeout_s = suite.stack.timeouts.model_call_ms / 1000.0

    def handle(self, request: RequestInfo) -> Generator[Effect, Outcome, Final]:
        yield Note("router", "cheap-then-strong", self.cheap[0])
        tried = []
        for tier, model in (self.cheap, self.strong):
            tried.append(tier)
            res = yield CallModel(model, "answer", request.input_tokens, self.timeout_s,
                                  prompt=request.text)  # fmt: skip
            assert isinstance(res, ModelResult)
            if res.status != "ok":
                return Final("handoff", "cheap-then-strong", "human", tuple(tried), handoff=True)
            if res.confidence >= self.threshold or tier == self.strong[0]:
                # "success" = an answer was delivered; the driver judges whether it is right
                return Final("success", "cheap-then-strong", tier, tuple(tried),
                             escalated=len(tried) > 1, confidence=res.confidence,
                             answer=res.text)  # fmt: skip
        raise AssertionError("unreachable")


def make_stack(suite: Suite) -> CheapThenStrong:
    """The factory named in the suite: `stack: {factory: "my_router:make_stack"}`."""
    return CheapThenStrong(suite)
