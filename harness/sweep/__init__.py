"""Sweeps: screen routing parameters on the world tape, confirm them over replications with
the engine, recommend one that holds at other seeds and passes CI's gates."""

from harness.sweep._confirm import constraint, p_next
from harness.sweep._probe import ROUTING, RouteProbe, route_probe, routing_problem
from harness.sweep._screen import Attempts, screen, screen_naive, threshold_for_share
from harness.sweep._sweep import (
    SCREENABLE,
    Setting,
    SweepError,
    SweepResult,
    expand,
    frontier_points,
    full_run,
    gaps,
    grid_settings,
    probe,
    recommendation,
    run_sweep,
    short_names,
    sweep_frame,
    target_share,
)

__all__ = [
    "ROUTING",
    "SCREENABLE",
    "Attempts",
    "RouteProbe",
    "Setting",
    "SweepError",
    "SweepResult",
    "constraint",
    "expand",
    "frontier_points",
    "full_run",
    "gaps",
    "grid_settings",
    "p_next",
    "probe",
    "recommendation",
    "route_probe",
    "routing_problem",
    "run_sweep",
    "screen",
    "screen_naive",
    "short_names",
    "sweep_frame",
    "target_share",
    "threshold_for_share",
]
