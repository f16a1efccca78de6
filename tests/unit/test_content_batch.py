"""Content written a chunk of requests at a time, and the stack's texts prepared ahead.

Texts are the same whatever order requests ask for them in and however often a chunk is
dropped and written again; the engine hands each chunk's texts to a stack that offers
`prepare_texts`, and a run's records do not depend on whether the stack does.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from harness.content import Content
from harness.engine import Engine
from harness.faults import schedule
from harness.run import tables
from harness.spec import Suite, load_suite
from harness.stack import Handler, ReferenceStack, RequestInfo
from harness.traffic import sample_requests
from harness.world import sample_tape

SUPPORT = Path(__file__).resolve().parents[2] / "scenarios" / "support.yaml"
CHUNK = 4096  # harness.content._CHUNK


def support(requests: int) -> Suite:
    return load_suite(SUPPORT, [f"traffic.requests={requests}"]).suite


def test_texts_do_not_depend_on_the_order_they_are_asked_for() -> None:
    suite = support(2 * CHUNK + 500)
    reqs = sample_requests(suite)
    n = len(reqs)
    forward = Content(suite, reqs)
    backward = Content(suite, reqs)
    ahead = [forward.message(i) for i in range(n)]
    assert [backward.message(i) for i in reversed(range(n))] == ahead[::-1]
    leak = "jane@example.com"
    answers = [forward.answer(i, None) for i in range(n)]
    assert [backward.answer(i, None) for i in reversed(range(n))] == answers[::-1]
    with_leak = [forward.answer(i, leak) for i in range(0, n, 97)]
    assert all(f" for the customer at {leak} " in a for a in with_leak)
    assert sum(planted is not None for _, planted in ahead) > 0.02 * n  # support plants PII
    assert all(planted in text for text, planted in ahead if planted is not None)


def test_a_request_of_a_dropped_chunk_gets_the_same_texts_alone() -> None:
    suite = support(8 * CHUNK)  # more chunks than are kept
    content = Content(suite, sample_requests(suite))
    first = content.message(5), content.answer(5, None), content.message(CHUNK - 1)
    offered: list[list[str]] = []
    content.on_texts = offered.append
    for k in range(1, 8):
        content.message(k * CHUNK)
    assert len(offered) == 7
    assert (content.message(5), content.answer(5, None), content.message(CHUNK - 1)) == first
    assert len(offered) == 7  # written alone, not offered again


def test_each_chunk_is_offered_once_before_its_requests_ask() -> None:
    suite = support(CHUNK + 10)
    content = Content(suite, sample_requests(suite))
    offered: list[list[str]] = []
    content.on_texts = offered.append
    text, _ = content.message(CHUNK + 3)
    assert len(offered) == 1 and len(offered[0]) == 2 * 10  # messages, then answers
    assert text in offered[0] and content.answer(CHUNK + 3, None) in offered[0]
    content.message(CHUNK + 9)
    content.message(0)
    assert [len(texts) for texts in offered] == [20, 2 * CHUNK]


class OwnStack:
    """A user's stack (`stack.factory`): the reference one without `prepare_texts`."""

    def __init__(self, suite: Suite) -> None:
        self.inner = ReferenceStack(suite)

    def handle(self, request: RequestInfo) -> Handler:
        return self.inner.handle(request)


def records(suite: Suite, own: bool) -> tuple[pa.Table, pa.Table]:
    reqs = sample_requests(suite)
    tape = sample_tape(suite, reqs)
    stack = OwnStack(suite) if own else ReferenceStack(suite)
    trace = Engine(suite, reqs, tape, schedule(suite), stack).run()
    result = tables(suite, reqs, trace, 0.0)
    return result.requests, result.spans


def test_records_are_the_same_with_and_without_texts_prepared_ahead() -> None:
    suite = support(CHUNK + 1500)
    prepared, plain = records(suite, own=False), records(suite, own=True)
    assert prepared[0].to_pandas().equals(plain[0].to_pandas())  # NaN equal to NaN
    assert prepared[1].to_pandas().equals(plain[1].to_pandas())
    assert prepared[1].num_rows > prepared[0].num_rows
