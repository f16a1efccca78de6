"""The README's column reference is generated from the schema; keep them in step."""

from __future__ import annotations

from pathlib import Path

from harness.storage import column_reference

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_column_reference_is_current() -> None:
    text = README.read_text(encoding="utf-8")
    section = text.split("<!-- columns:start -->\n")[1].split("<!-- columns:end -->")[0]
    assert section == column_reference(), "regenerate the README section from column_reference()"


def test_readme_opens_with_the_two_commands() -> None:
    text = README.read_text(encoding="utf-8")
    block = text.split("```bash\n")[1].split("```")[0].strip().splitlines()
    assert len(block) == 2
    assert block[0].endswith("evalx run scenarios/support.yaml")
    assert "pytest" in block[1]
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert block[1] in ci
