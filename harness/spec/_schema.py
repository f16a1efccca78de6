"""The JSON Schema of suite files, for editor completion and checks outside evalx.

Generated from the pydantic models, so it cannot drift from what `evalx validate` accepts:
every key, type, bound and docstring (as `description`) of `Suite`. `evalx schema` prints
it; `schema/suite.schema.json` in the repository is its committed copy, which the shipped
suites name in a `# yaml-language-server: $schema=...` line. The schema checks each file on
its own: cross references (a route's tier, a fault's target) and the merging of `include`
fragments and policy files are `evalx validate`'s.
"""

from __future__ import annotations

import json
from typing import Any

from harness.spec._models import Suite

DIALECT = "https://json-schema.org/draft/2020-12/schema"
"""The JSON Schema dialect pydantic generates."""


def suite_schema() -> dict[str, Any]:
    """The JSON Schema of a suite file (validation mode: what a file may contain)."""
    return {"$schema": DIALECT, **Suite.model_json_schema(mode="validation")}


def suite_schema_text() -> str:
    """`suite_schema()` as the text `evalx schema` prints and the committed file holds."""
    return json.dumps(suite_schema(), indent=2, ensure_ascii=False) + "\n"
