"""Reading run directories for a comparison: the manifest, the requests table, what the
manifests warn about, and whether two requests tables are the same requests.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from harness.compare._errors import CompareError
from harness.compare._metrics import PAIR_KEYS, REQUIRED_COLUMNS
from harness.integrity import IntegrityError, read_manifest, read_table
from harness.storage import MANIFEST, REQUESTS

if TYPE_CHECKING:
    import pandas as pd


def pairing_problem(baseline: pd.DataFrame, candidate: pd.DataFrame) -> str | None:
    """Why two requests tables are not the same requests, or None if they are.

    Pairs need identical `PAIR_KEYS` columns: the same ids, arrival times and classes.
    """
    if len(baseline) != len(candidate):
        return f"request counts differ ({len(baseline):,} vs {len(candidate):,})"
    for column in PAIR_KEYS:
        if column not in baseline.columns or column not in candidate.columns:
            return f"a requests table lacks the {column} column"
        x, y = baseline[column].to_numpy(), candidate[column].to_numpy()
        differ = np.asarray(x != y)
        if differ.any():
            first = int(np.argmax(differ))
            rid = baseline["request_id"].to_numpy()[first] if column != "request_id" else first
            where = f"request_id {rid}" if column != "request_id" else f"row {first}"
            return f"{column} differs (first at {where})"
    return None


def _read_manifest(run: Path) -> dict[str, Any]:
    """The manifest of a run directory, shape-checked (`harness.integrity`)."""
    if not run.exists():
        raise CompareError(f"{run}: no such run directory")
    if not run.is_dir():
        raise CompareError(
            f"{run}: not a run directory (a file); pass the directory holding "
            f"{REQUESTS} and {MANIFEST}"
        )
    missing = [name for name in (REQUESTS, MANIFEST) if not (run / name).is_file()]
    if missing:
        raise CompareError(
            f"{run}: not a run directory (no {' and no '.join(missing)}); "
            "pass a directory written by evalx run"
        )
    try:
        manifest = read_manifest(run)
        if "schema_version" not in manifest:
            raise CompareError(f"{run / MANIFEST}: not an evalx run manifest (no schema_version)")
    except IntegrityError as err:
        raise CompareError(str(err)) from None
    return manifest


def _read_requests(run: Path) -> pd.DataFrame:
    """The columns a comparison reads, verified against the manifest's hash, type- and
    range-checked (`harness.integrity`)."""
    try:
        manifest = read_manifest(run)
        table = read_table(run, REQUESTS, manifest, columns=REQUIRED_COLUMNS,
                           optional=("replication",))  # fmt: skip
    except IntegrityError as err:
        raise CompareError(str(err)) from None
    frame: pd.DataFrame = table.to_pandas()
    return frame


def _policy_text(manifest: Mapping[str, Any]) -> str:
    policy = manifest.get("policy") or {}
    digest = str(policy.get("hash", ""))[:8]
    return f"{policy.get('name', '?')} {policy.get('version', '?')} ({digest})"


def _manifest_warnings(base: Mapping[str, Any], cand: Mapping[str, Any]) -> list[str]:
    out = []
    vb = (base.get("versions") or {}).get("evalx")
    vc = (cand.get("versions") or {}).get("evalx")
    if vb != vc:
        out.append(f"harness versions differ: {vb} vs {vc}")
    hb = (base.get("policy") or {}).get("hash")
    hc = (cand.get("policy") or {}).get("hash")
    if hb != hc:
        out.append(f"policies differ: {_policy_text(base)} vs {_policy_text(cand)}")
    return out


def _version_key(version: object) -> tuple[int, str]:
    try:
        return int(str(version)), ""
    except ValueError:
        return -1, str(version)
