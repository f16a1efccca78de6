"""Sweeps: screen routing thresholds on the world tape, confirm with the engine, recommend."""

from harness.sweep._screen import Attempts, screen, screen_naive, threshold_for_share
from harness.sweep._sweep import (
    SCREENABLE,
    Setting,
    SweepError,
    SweepResult,
    expand,
    full_run,
    gaps,
    grid_settings,
    probe,
    recommendation,
    run_sweep,
    sweep_frame,
    target_share,
)

__all__ = [
    "SCREENABLE",
    "Attempts",
    "Setting",
    "SweepError",
    "SweepResult",
    "expand",
    "full_run",
    "gaps",
    "grid_settings",
    "probe",
    "recommendation",
    "run_sweep",
    "screen",
    "screen_naive",
    "sweep_frame",
    "target_share",
    "threshold_for_share",
]
