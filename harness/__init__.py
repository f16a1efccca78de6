"""evalx: production-like scenario evaluation for multi-model LLM routing stacks.

The package is imported by the `evalx` command; heavy libraries (pandas, pyarrow)
load only when a run needs them, so `evalx --help` stays fast.
"""

__version__ = "0.1.0"
