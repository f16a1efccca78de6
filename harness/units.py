"""How numbers read to people: compact durations, money, shares and plain figures.

One set of rules for every table and sentence evalx prints (terminal, report.md, HTML,
the sweep's margins), so that one quantity never reads two ways: durations carry their
unit (`350 ms`, `8.5 s`, `26 min`), money keeps two or three significant digits (`$0.13`,
`$0.0077`), and no figure is ever written with an exponent (`+15,900`, never
`+1.59e+04`). Missing values (NaN, None) read as `-`.
"""

from __future__ import annotations

import math

MISSING = "-"


def number(v: float | None, sign: bool = False, digits: int = 4) -> str:
    """A figure with thousands separators from 1,000 up, else `digits` significant digits,
    trailing zeros dropped; never an exponent (`1,967,458`, `0.04585`, `0.00001234`)."""
    if v is None or math.isnan(v):
        return MISSING
    if math.isinf(v):
        return ("+" if sign and v > 0 else "") + ("∞" if v > 0 else "-∞")
    plus = "+" if sign and v >= 0 else ""
    if abs(v) >= 1000 or v == int(v):
        return f"{v:{plus},.0f}"
    decimals = max(digits - 1 - math.floor(math.log10(abs(v))), 0)
    text = f"{v:{plus}.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def duration(ms: float | None) -> str:
    """Milliseconds in the unit that reads best: `20 ms`, `8.5 s`, `47 s`, `2.5 min`, `26 min`,
    `1.2 h`."""
    if ms is None or math.isnan(ms):
        return MISSING
    s, m = ms / 1000.0, ms / 60_000.0
    if abs(ms) < 999.5:
        return f"{ms:,.0f} ms"
    if abs(s) < 9.95:
        return f"{s:.1f} s"
    if abs(s) < 59.5:
        return f"{s:.0f} s"
    if abs(m) < 9.95:
        return f"{m:.1f} min"
    if abs(m) < 59.5:
        return f"{m:.0f} min"
    return f"{m / 60:,.1f} h"


def usd(v: float | None) -> str:
    """Dollars: `$0`, `$0.0077`, `$0.134`, `$1.50`, `$1,234`."""
    if v is None or math.isnan(v):
        return MISSING
    if v == 0:
        return "$0"
    if abs(v) >= 100:
        return f"${v:,.0f}"
    if abs(v) >= 1:
        return f"${v:.2f}"
    if abs(v) >= 0.01:
        return f"${v:.3f}"
    return "$" + number(v, digits=2)


def pct(rate: float | None, decimals: int = 1) -> str:
    """A share as a percentage: `93.5%`."""
    if rate is None or math.isnan(rate):
        return MISSING
    return f"{100 * rate:.{decimals}f}%"


def pp(delta: float | None, decimals: int = 1) -> str:
    """A difference of two shares in percentage points, signed: `+1.3 pp`."""
    if delta is None or math.isnan(delta):
        return MISSING
    return f"{100 * delta:+.{decimals}f} pp"


def count(n: float | None) -> str:
    """A count with thousands separators: `8,000`."""
    if n is None or math.isnan(n):
        return MISSING
    return f"{int(n):,}"
