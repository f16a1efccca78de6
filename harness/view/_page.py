"""The viewer as one HTML file: the page's template, style and script with the data inside.

Nothing is fetched from a network: the style and script are inlined, and a Content
Security Policy allows exactly those two (by hash) and, for a served page, requests to its
own origin. The data is a JSON block (``<script type="application/json">``, never run)
whose ``<``, ``>`` and ``&`` are written as JSON escapes, so no text in a run, a
``</script>`` included, can end the block; the script puts every text into the page with
``textContent``, never as markup.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from importlib import resources
from typing import Any

__all__ = ["render"]

_ASSETS = "assets"
_SLOT = re.compile(r"\{\{(title|csp|style|script|data)\}\}")


def _asset(name: str) -> str:
    return resources.files("harness.view").joinpath(_ASSETS, name).read_text(encoding="utf-8")


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def json_block(data: Any) -> str:
    """`data` as JSON that is safe inside a script element (and as a JS string literal)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                         ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):  # fmt: skip
        text = text.replace(char, escape)
    return text


def render(payload: dict[str, Any]) -> str:
    """The viewer page for `payload` (`harness.view.payload`)."""
    style, script = _asset("viewer.css"), _asset("viewer.js")
    csp = "; ".join(
        [
            "default-src 'none'",
            f"script-src {_hash(script)}",
            f"style-src {_hash(style)}",
            "img-src data:",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
        ]
    )
    names = " vs ".join(str(r.get("name")) for r in payload["runs"])
    slots = {
        "title": html.escape(f"evalx view: {names}"),
        "csp": html.escape(csp),
        "style": style,
        "script": script,
        "data": json_block(payload),
    }
    return _SLOT.sub(lambda m: slots[m.group(1)], _asset("viewer.html"))
