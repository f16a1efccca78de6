"""Live runs against real endpoints: drivers, a loopback dev server, record/replay."""
