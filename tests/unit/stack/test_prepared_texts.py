"""`ReferenceStack.prepare_texts`: scanning texts ahead changes nothing but speed.

The stack keys prepared scans by the text itself, so a request whose text was prepared,
one whose text was not, and one whose text arrives different all get the Notes and the
Final a stack that prepared nothing gives.
"""

from __future__ import annotations

from typing import Any

import pytest

from harness.spec import Suite
from harness.stack import (
    CallModel,
    Final,
    Handoff,
    HumanResult,
    ModelResult,
    Note,
    ReferenceStack,
    RequestInfo,
    Tick,
)

MESSAGES = [
    "where is my order A123456?",
    "mail me at jane.doe@example.com please, card 4111 1111 1111 1111",
    "IBAN DE89 3704 0044 0532 0130 00, phone +44 20 7946 0958",
    "+(44) 20 7946 0958 and ORD-2024-000123",
    "",
]
ANSWERS = [
    "Thanks, done.",
    "Done for the customer at jane.doe@example.com and it is resolved.",
    "Refunded to 4111-1111-1111-1111.",
]


def suite(**pii: Any) -> Suite:
    return Suite.model_validate(
        {
            "name": "prepared",
            "traffic": {"mix": {"routine": {"weight": 1}}},
            "models": {"s": {"tier": "fast", "quality": {}}},
            "stack": {"classifier": {"enabled": False}, "retry_budget": None},
            "policies": {"pii": pii},
        }
    )


def run(stack: ReferenceStack, text: str, answer: str) -> tuple[list[Any], Final]:
    """Drive one request: every model call answers `answer`."""
    gen = stack.handle(RequestInfo(0, 0.0, 100, (), text=text))
    effects: list[Any] = []
    out: Any = None
    try:
        while True:
            eff = gen.send(out)
            effects.append(eff)
            if isinstance(eff, CallModel):
                res = ModelResult("ok", 1.0, 0.1)
                res.confidence = 0.9
                res.text = answer
                out = res
            elif isinstance(eff, Handoff):
                out = HumanResult("ok", 1.0, 0.0)
            else:
                out = Tick(1.0)
    except StopIteration as stop:
        return effects, stop.value


NoteFields = tuple[str, str, str, bool, bool, str | None, str]


def notes(effects: list[Any]) -> list[NoteFields]:
    return [
        (e.kind, e.name, e.detail, e.caught, e.acted, e.guards, e.stage)
        for e in effects
        if isinstance(e, Note)
    ]


@pytest.mark.parametrize(
    "pii",
    [
        {},
        {"redact_input": False, "redact_output": False},
        {"detect": ["email"], "custom": [{"name": "order_id", "pattern": r"A\d{6}"}]},
        {"custom": [{"name": "lead", "pattern": r"^\+?\(?\d+"}]},
    ],
)
def test_prepared_and_unprepared_stacks_give_the_same_notes(pii: dict[str, Any]) -> None:
    plain = ReferenceStack(suite(**pii))
    prepared = ReferenceStack(suite(**pii))
    prepared.prepare_texts([*MESSAGES[:3], *ANSWERS[:2]])  # some texts prepared, some not
    for text in MESSAGES:
        for answer in ANSWERS:
            expected = run(plain, text, answer)
            got = run(prepared, text, answer)
            assert notes(got[0]) == notes(expected[0])
            assert got[1] == expected[1]
    assert any(n[1] == "pii_redaction" for t in MESSAGES for n in notes(run(plain, t, "")[0]))


def test_a_text_that_arrives_different_is_scanned_as_it_arrives() -> None:
    stack = ReferenceStack(suite())
    stack.prepare_texts(["where is my order?"])
    effects, final = run(stack, "where is my order? jane@example.com", "ok")
    assert [n[2] for n in notes(effects) if n[1] == "pii_redaction"] == ["email"]
    assert final.prompt == "where is my order? [EMAIL]"


def test_prepared_scans_are_bounded() -> None:
    stack = ReferenceStack(suite())
    stack._scans_kept = 3
    stack.prepare_texts(["a", "b"])
    stack.prepare_texts(["c", "d", "e@example.com"])
    assert list(stack._scans) == ["c", "d", "e@example.com"]  # the oldest went first
    assert run(stack, "a", "ok")[1] == run(ReferenceStack(suite()), "a", "ok")[1]
