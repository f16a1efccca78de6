"""A fit is a value with provenance, written as a suite fragment a person could have typed.

Every fit (`LatencyFit`, `TrafficFit`, `QualityFit`) is a `Fit`: it knows

- where its data came from (`Provenance`: source paths, their sha256 and row counts,
  the rows that informed the fit, the UTC date, the command, the evalx version);
- the suite keys it fills in (`to_fragment()`: plain dicts in the suite's own shapes);
- how well each fitted quantity matches its data (`components()`: one `Component` per
  distribution or prediction, with the observed values kept for the fit report).

`write(path)` writes the fragment as YAML whose leading comment block holds the
provenance and one goodness-of-fit line per component, so a fitted world can be read,
diffed and reviewed like a hand-written one. Numbers are rounded when fitted (not when
written), so the YAML holds exactly what was checked.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import textwrap
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from harness.data._common import Source
from harness.data._dist import Dist
from harness.data._gof import GoodnessOfFit

__all__ = [
    "Component",
    "Fit",
    "Provenance",
    "Source",
    "evalx_version",
    "provenance",
    "sources_from_column",
]

FloatArray = npt.NDArray[np.float64]


def evalx_version() -> str:
    """The installed evalx version, or `unknown` when it is not installed as a package."""
    try:
        return metadata.version("evalx")
    except metadata.PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class Provenance:
    """Where a fit came from; the leading comment block of its YAML."""

    sources: tuple[Source, ...]
    rows_used: int
    """Rows that informed the fit (e.g. successful calls with timings, for latency)."""
    created: str
    """UTC date of the fit, ISO 8601 (YYYY-MM-DD)."""
    command: str
    """The command that produced it (empty when fitted from Python)."""
    version: str = field(default_factory=evalx_version)
    """evalx version that fitted it."""


def provenance(
    sources: Iterable[Source],
    rows_used: int,
    *,
    created: str | dt.date | None = None,
    command: str = "",
) -> Provenance:
    """A `Provenance` dated today (UTC) unless `created` is given (tests pin it)."""
    if created is None:
        created = dt.datetime.now(dt.UTC).date()
    text = created.isoformat() if isinstance(created, dt.date) else str(created)
    return Provenance(tuple(sources), int(rows_used), text, command)


def sources_from_column(paths: npt.ArrayLike) -> tuple[Source, ...]:
    """The sources a table names in its `source` column: one per distinct non-empty path,
    with the rows that came from it, hashed when the file is readable from here."""
    text = np.asarray(paths, dtype=object).astype(str)
    names, counts = np.unique(text[text != ""], return_counts=True)
    return tuple(Source.of(str(n), int(c)) for n, c in zip(names, counts, strict=True))


@dataclass(frozen=True, eq=False)
class Component:
    """One fitted quantity checked against its data: what a fit report draws.

    Either `dist` is set (a distribution written in the fragment, checked directly) or
    `predicted` is (a sample simulated from several fitted terms, such as end-to-end
    latency from time to first token plus per-token time).
    """

    key: str
    """Where it lives in the fragment (`models.m.latency.ttft`), or what it predicts."""
    title: str
    """Short human label (`m: time to first token`)."""
    observed: FloatArray
    gof: GoodnessOfFit
    unit: str = "ms"
    dist: Dist | None = None
    predicted: FloatArray | None = None
    note: str = ""
    """Why this shape, or how the prediction was made."""
    shape: str = ""
    """What was fitted, in a few words; defaults to the distribution's description."""

    @property
    def describe(self) -> str:
        """`shape`, else the distribution's description, else `predicted`."""
        if self.shape:
            return self.shape
        return self.dist.describe() if self.dist is not None else "predicted"

    @property
    def slug(self) -> str:
        """File-name part for figures: the key without `models.`, `traffic.` and `.latency`,
        dashed (`m-ttft`, `mix-default-input_tokens`)."""
        key = re.sub(r"^(models|traffic)\.", "", self.key).replace(".latency.", ".")
        return re.sub(r"[^A-Za-z0-9_]+", "-", key.replace(".", "-")).strip("-")

    def fitted_quantile(self, q: npt.ArrayLike) -> FloatArray:
        """Quantiles of the fit (the distribution's, or the predicted sample's)."""
        if self.dist is not None:
            return self.dist.quantile(q)
        assert self.predicted is not None
        return np.asarray(np.quantile(self.predicted, np.asarray(q, np.float64)), np.float64)

    def fitted_cdf(self, x: npt.ArrayLike) -> FloatArray:
        """The fit's P(X <= x)."""
        if self.dist is not None:
            return self.dist.cdf(x)
        assert self.predicted is not None
        pred = np.sort(self.predicted)
        return np.searchsorted(pred, np.asarray(x, dtype=np.float64), side="right") / pred.size

    def gof_line(self) -> str:
        """`key: shape: n=.. KS=.. p50 +..%` for the YAML header."""
        return f"{self.key}: {self.describe}: {self.gof.summary()}"


class Fit(ABC):
    """A fitted suite fragment: provenance, suite keys, and its goodness of fit."""

    kind: ClassVar[str]
    """`latency`, `traffic` or `quality`: what was fitted (names the default files)."""
    provenance: Provenance

    @abstractmethod
    def to_fragment(self) -> dict[str, Any]:
        """The suite keys this fit fills in, in the suite's own shapes (plain dicts)."""

    @abstractmethod
    def components(self) -> tuple[Component, ...]:
        """Every fitted distribution or prediction, with its data and goodness of fit."""

    def notes(self) -> tuple[str, ...]:
        """Rules and decisions worth a reviewer's eye (one line each)."""
        return ()

    def summary(self) -> tuple[str, ...]:
        """Headline results for the YAML header that have no component (e.g. quality)."""
        return ()

    def header(self) -> str:
        """The leading comment block: provenance, rules and one GoF line per component."""
        p = self.provenance
        lines = [f"Fitted by evalx {p.version} on {p.created} ({self.kind})."]
        if p.command:
            lines.append(f"Command: {p.command}")
        lines.append("Sources:" if p.sources else "Sources: none recorded")
        for s in p.sources:
            lines.append(f"  {s.path} sha256:{s.sha256 or 'unreadable'} rows={s.rows}")
        lines.append(f"Rows used: {p.rows_used}")
        lines.extend(self.notes())
        lines.extend(self.summary())
        comps = self.components()
        if comps:
            lines.append("Goodness of fit (KS = largest cdf gap; % = fitted vs observed quantile):")
            lines.extend(f"  {c.gof_line()}" for c in comps)
        wrapped = (
            part
            for line in lines
            for part in textwrap.wrap(
                line,
                width=98,
                subsequent_indent=" " * (len(line) - len(line.lstrip()) + 4),
                break_long_words=False,  # paths and hashes stay whole
                break_on_hyphens=False,
            )
            or [""]
        )
        return "".join(f"# {part}\n" for part in wrapped)

    def to_yaml(self) -> str:
        """The fragment as YAML text, header first."""
        from ruamel.yaml import YAML

        yaml = YAML(typ="rt")
        yaml.width = 92  # a soft limit: ruamel may pass it by an item; lines stay <= 100
        yaml.indent(mapping=2, sequence=4, offset=2)
        buf = io.StringIO()
        yaml.dump(_commented(self.to_fragment()), buf)
        body = "\n".join(line.rstrip() for line in buf.getvalue().splitlines())
        return f"{self.header()}\n{body}\n"

    def write(self, out_path: str | Path) -> Path:
        """Write `to_yaml()` to `out_path` (parent folder must exist); the path."""
        out = Path(out_path)
        out.write_text(self.to_yaml(), encoding="utf-8")
        return out


def _commented(obj: Any) -> Any:
    """Plain data to ruamel nodes: numeric lists in flow style, everything else block."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if isinstance(obj, Mapping):
        return CommentedMap((str(k), _commented(v)) for k, v in obj.items())
    if isinstance(obj, Sequence) and not isinstance(obj, str):
        seq = CommentedSeq(_commented(v) for v in obj)
        if all(isinstance(v, int | float) for v in obj):
            seq.fa.set_flow_style()
        return seq
    if isinstance(obj, np.generic):
        return obj.item()
    return obj
