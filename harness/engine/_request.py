"""One request in flight: its stack generator, what it spent, and its ground truth.

The ground truth (`actions`, `input_pii`, `customer_pii`, `injected`) is held here for
scoring only: it never reaches the stack, which sees `RequestInfo` and outcomes.
"""

from __future__ import annotations

from harness.engine._trace import KIND, STAGE
from harness.stack._effects import Handler


class Proc:
    """One request in flight."""

    __slots__ = ("actions", "answers", "asked", "cached", "calls", "cls", "cost", "customer_pii",
                 "evasive", "gen", "in_tok", "injected", "input_pii", "mcalls", "nspan", "out_tok",
                 "penalty", "plan", "prevented", "rid", "right", "right_tier", "saw_injection",
                 "send", "step", "tcalls", "violations")  # fmt: skip

    def __init__(
        self,
        rid: int,
        gen: Handler,
        cls: int,
        n_targets: int,
        actions: tuple[str, ...],
        plan: tuple[str, ...] = (),
    ) -> None:
        self.rid = rid
        self.gen = gen
        self.send = gen.send  # looked up once: the loop sends to it at every step
        self.cls = cls
        self.actions = actions  # the actions the user asked for (prohibited, high impact)
        self.plan = plan  # the tools the task needs, in order (the model follows it)
        self.step = 0  # planned tool calls done
        self.right = False  # whether the last answer the world judged was right
        self.right_tier = ""  # tier of the first right answer delivered ('' none yet)
        self.evasive = False  # its edge cases are written to escape the detectors
        self.asked: dict[str, str] = {}  # tool a model proposed for a user's ask -> the action
        self.input_pii: str | None = None  # the personal data planted in the prompt
        self.customer_pii: tuple[str, ...] = ()  # personal data tools returned
        self.saw_injection = False  # a tool result carried an injected instruction
        self.injected: set[str] = set()  # actions models proposed under injection
        self.prevented: list[str] = []
        self.calls = [0] * n_targets  # calls made per model, then per tool (tape call index)
        self.answers: dict[str, tuple[float, bool]] = {}
        """Tier -> (first token time, right) of its last good answer."""
        self.nspan = 0
        self.in_tok = 0
        self.out_tok = 0
        self.cached = 0  # input tokens read from prompt caches
        self.cost = 0.0
        self.penalty = 0.0
        self.mcalls = 0
        self.tcalls = 0
        self.violations: list[str] = []

    def span_index(self) -> int:
        """The next span's index within this request."""
        idx = self.nspan
        self.nspan = idx + 1
        return idx

    def violate(self, kind: str, stage: str) -> tuple[int, int]:
        """Count a violation once per (kind, stage); the span mark that records it."""
        key = f"{kind}@{stage}"
        if key in self.violations:
            return STAGE[stage], 0
        self.violations.append(key)
        return STAGE[stage], KIND[kind]
