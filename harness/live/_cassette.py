"""Record and replay HTTP interactions in vcrpy cassettes, streams included.

vcrpy's own httpx patch reads a whole response before the client sees its first byte, so
a stream recorded through it would show no time to first token. `CassetteTransport` is an
httpx transport over a vcrpy `Cassette` (vcrpy's format, filters, matchers, serializer
and persister): recording, it hands the response through chunk by chunk as the network
delivers it and appends the interaction to the cassette when the body is complete;
replaying, it answers from the cassette and never touches the network. The cassette file
is an ordinary vcrpy cassette (`vcr.use_cassette` replays it too).

What cannot be in a cassette — a timeout, a refused connection, a reset — is kept in the
timings file beside it (see `_session`), and replayed from there by the driver.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx

CALL_HEADER = "x-evalx-call"
"""Names each call (request id, model or tool, call index): replays match concurrent and
repeated calls to the right recorded response, and timings are kept per call."""
FILTERED_HEADERS = ("authorization", "api-key", "x-api-key", "openai-organization", "cookie")


class NotRecorded(Exception):
    """A replayed call the cassette has no interaction for."""


def _same_call(r1: Any, r2: Any) -> None:
    """vcrpy matcher: the same call of the same request (see CALL_HEADER)."""
    assert r1.headers.get(CALL_HEADER) == r2.headers.get(CALL_HEADER)


def open_cassette(path: Path, replaying: bool) -> Any:
    """A vcrpy `Cassette` at `path`: loaded for replay, or empty for a fresh recording."""
    import vcr
    from vcr.cassette import Cassette

    recorder = vcr.VCR(
        record_mode="none" if replaying else "all",
        match_on=["method", "scheme", "host", "port", "path", "query", "body", "evalx_call"],
        filter_headers=list(FILTERED_HEADERS),
        filter_query_parameters=["api_key", "key"],
        decode_compressed_response=True,
        drop_unused_requests=not replaying,
    )
    recorder.register_matcher("evalx_call", _same_call)
    config = recorder.get_merged_config(path=str(path))
    for key in ("path_transformer", "func_path_generator", "record_on_exception"):
        config.pop(key, None)
    return Cassette.load(**config)


def _serialize(response: httpx.Response, content: bytes) -> dict[str, Any]:
    headers: dict[str, list[str]] = defaultdict(list)
    for name, value in response.headers.multi_items():
        headers[name].append(value)
    return {
        "status": {"code": response.status_code, "message": response.reason_phrase},
        "headers": dict(headers),
        "body": {"string": content},
    }


class _Tee(httpx.AsyncByteStream):
    """A response body passed through as it arrives, kept, and handed on when complete."""

    def __init__(self, inner: httpx.AsyncByteStream, done: Callable[[bytes], None]) -> None:
        self.inner = inner
        self.done = done
        self.parts: list[bytes] = []

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for part in self.inner:
            self.parts.append(part)
            yield part
        self.done(b"".join(self.parts))

    async def aclose(self) -> None:
        await self.inner.aclose()


class CassetteTransport(httpx.AsyncBaseTransport):
    """Recording (`replaying=False`): the network through `inner`, each complete
    interaction appended to `cassette`. Replaying: the cassette only."""

    def __init__(self, cassette: Any, replaying: bool, inner: httpx.AsyncBaseTransport) -> None:
        self.cassette = cassette
        self.replaying = replaying
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        from vcr.request import Request as VcrRequest

        content = await request.aread()
        vreq = VcrRequest(request.method, str(request.url), content, request.headers)
        if self.replaying:
            if not self.cassette.can_play_response_for(vreq):
                raise NotRecorded(f"{request.method} {request.url}")
            played = self.cassette.play_response(vreq)
            headers = [(k, v) for k, values in played["headers"].items() for v in values]
            body = played["body"]["string"]
            if isinstance(body, str):
                body = body.encode("utf-8")
            return httpx.Response(played["status"]["code"], headers=headers,
                                  stream=httpx.ByteStream(body), request=request)  # fmt: skip
        response = await self.inner.handle_async_request(request)
        tee_target = httpx.Response(response.status_code, headers=response.headers)
        tee_target.extensions = response.extensions

        def done(body: bytes) -> None:
            self.cassette.append(vreq, _serialize(tee_target, body))

        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(response.status_code, headers=response.headers,
                              stream=_Tee(response.stream, done),
                              extensions=response.extensions, request=request)  # fmt: skip

    async def aclose(self) -> None:
        await self.inner.aclose()

    def save(self) -> None:
        """Write the cassette (recording)."""
        if not self.replaying:
            self.cassette._save(force=True)
