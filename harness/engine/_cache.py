"""Prompt caching: one model's cache of prompt prefixes, in virtual time.

A call's prompt starts with prefixes the provider may have seen: the stack's system prompt
(shared by every call), the conversation this request sent to the model before, and, for
sessions, the conversation of earlier turns. Each prefix has a key; the cache maps a key to
the tokens it holds, when they became readable (the writing call's prefill is done) and
when they were last used. A call reads the longest live prefix it sends and then writes
every prefix it sends that is long enough to cache. An entry not used for `ttl_s` is gone.
Hit rates therefore follow from traffic (shared prefixes, time between calls), never from a
probability, and the cache is deterministic: no draws, only the order of calls.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

from harness.spec import Cache, Price

Prefix = tuple[Hashable, int]
"""(key, tokens) of a prefix a call sends: tokens from the start of its prompt."""

SYSTEM = ("system",)
"""Key of the system prompt shared by every call to a model."""

CACHED_SHARE = 0.1
"""Price of a cached token relative to an uncached one when the suite names none."""


class PromptCache:
    """One model's prompt cache: key -> [tokens, readable from (s), last used (s)]."""

    __slots__ = ("discount", "entries", "min_tokens", "saving", "sweep_at", "ttl")

    def __init__(self, spec: Cache, price: Price) -> None:
        cached = spec.cached_input_per_mtok
        if cached is None:
            cached = price.input_per_mtok * CACHED_SHARE
        self.discount = (price.input_per_mtok - cached) / 1e6
        """USD an input token costs less when it is read from the cache."""
        self.saving = spec.prefill_saving
        self.min_tokens = spec.min_prefix_tokens
        self.ttl = spec.ttl_s
        self.entries: dict[Hashable, list[float]] = {}
        self.sweep_at = 1024

    def read(self, now: float, prefixes: Sequence[Prefix]) -> int:
        """Tokens of the longest prefix in `prefixes` that is readable and live at `now`;
        a hit renews its entry."""
        best = 0
        entries = self.entries
        for key, tokens in prefixes:
            e = entries.get(key)
            if e is None or e[1] > now:
                continue
            if now - e[2] > self.ttl:
                del entries[key]
                continue
            e[2] = now
            hit = tokens if tokens < e[0] else int(e[0])
            if hit > best:
                best = hit
        return best

    def write(self, now: float, ready: float, prefixes: Sequence[Prefix]) -> None:
        """Cache every prefix of at least `min_tokens` that a call issued at `now` sends,
        readable from `ready` (its prefill done); a live entry of the same length is renewed."""
        entries = self.entries
        for key, tokens in prefixes:
            if tokens < self.min_tokens:
                continue
            e = entries.get(key)
            if e is not None and e[0] == tokens and now - e[2] <= self.ttl:
                e[2] = now
            else:
                entries[key] = [tokens, ready, now]
        if len(entries) > self.sweep_at:
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        """Drop expired entries; amortised, so memory follows the live prefixes."""
        ttl = self.ttl
        self.entries = {k: e for k, e in self.entries.items() if now - e[2] <= ttl}
        self.sweep_at = max(1024, 2 * len(self.entries))
