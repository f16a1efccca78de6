"""Live runs against real endpoints: drivers, a loopback dev server, record/replay."""

from harness.live._driver import LiveDriver, LiveError
from harness.live._session import cassette_paths, live_run

__all__ = ["LiveDriver", "LiveError", "cassette_paths", "live_run"]
