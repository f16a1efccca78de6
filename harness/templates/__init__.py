"""Starter suites for `evalx init`: commented suites that validate and run as written.

Each template is a folder of this package holding `suite.yaml` and the files it names
(a policy, a requests file, a log), shipped as package data. `write_template` copies one
beside the suite path it is given, adds `suite.schema.json` (`evalx schema`) so that an
editor with the YAML language server completes and checks keys, and names that schema in
the suite's first line. It never overwrites: if any file it would write exists (a schema
with the same content excepted), it writes nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from harness.errors import EvalxError

__all__ = ["SCHEMA_FILE", "TEMPLATES", "InitError", "Template", "write_template"]

SCHEMA_FILE = "suite.schema.json"
"""The schema written beside an initialised suite, and named in its first line."""


@dataclass(frozen=True)
class Template:
    """A starter suite: its folder in this package, and what it shows."""

    name: str
    summary: str
    companions: tuple[str, ...] = ()
    """Files the suite names, written beside it under these names."""


TEMPLATES = {
    t.name: t
    for t in (
        Template(
            "support",
            "three tiers, tools, a spike, an outage, edge cases, a policy file",
            ("policy.yaml",),
        ),
        Template("two-tier", "the smallest useful suite: two tiers, two classes, defaults"),
        Template(
            "live",
            "OpenAI-compatible endpoints (the bundled dev server), assertions",
            ("requests.jsonl",),
        ),
        Template("log-replay", "a request log replayed over a simulated stack", ("traffic.csv",)),
    )
}
"""Every template by name; `support` is the default of `evalx init`."""


class InitError(EvalxError):
    """A template cannot be written as asked (unknown name, a file already there)."""


def write_template(name: str, path: Path) -> list[Path]:
    """Write template `name` and return the files written, the suite first.

    `path` is the suite file (`*.yaml` / `*.yml`) or a folder to write `suite.yaml` into;
    the folder is created if needed, and the companions and the schema go beside the suite.
    """
    from harness.spec import suite_schema_text

    template = TEMPLATES.get(name)
    if template is None:
        raise InitError(f"--template {name}: no such template; one of {', '.join(TEMPLATES)}")
    suite = path if path.suffix in (".yaml", ".yml") else path / "suite.yaml"
    folder = suite.parent
    if folder.exists() and not folder.is_dir():
        raise InitError(f"{folder}: not a folder; pass a folder or a .yaml path")
    source = files("harness.templates").joinpath(name)
    header = f"# yaml-language-server: $schema={SCHEMA_FILE}\n"
    body = {suite: header + source.joinpath("suite.yaml").read_text(encoding="utf-8")}
    for companion in template.companions:
        body[folder / companion] = source.joinpath(companion).read_text(encoding="utf-8")
    schema = folder / SCHEMA_FILE
    text = suite_schema_text()
    if not (schema.is_file() and schema.read_text(encoding="utf-8") == text):
        body[schema] = text
    there = [p for p in body if os.path.lexists(p)]
    if there:
        names = ", ".join(str(p) for p in there)
        raise InitError(f"{names}: already there; evalx init never overwrites: remove "
                        f"{'it' if len(there) == 1 else 'them'} or pass another path")  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    try:
        for target, content in body.items():
            with target.open("x", encoding="utf-8", newline="\n") as f:  # never clobbers
                f.write(content)
            written.append(target)
    except OSError as err:
        for done in written:
            done.unlink(missing_ok=True)
        raise InitError(f"{err.filename or folder}: cannot write: {err.strerror}") from None
    return written
