"""The README's configuration table documents every key with its real default."""

import re
from pathlib import Path

from stacks.config import ProjectConfig

README = Path(__file__).resolve().parent.parent / "README.md"


def _table_rows() -> dict[str, str]:
    rows = {}
    for line in README.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\| `([a-z0-9_]+)` \| `([^`]*)` \|", line)
        if match:
            rows[match.group(1)] = match.group(2)
    return rows


def test_every_config_key_is_documented_with_its_default() -> None:
    rows = _table_rows()
    documented = ProjectConfig.documented()
    defaults = ProjectConfig()
    for name in documented:
        assert name in rows, f"README configuration table lacks {name}"
        value = getattr(defaults, name)
        if value is None:
            shown = '""'
        elif isinstance(value, float):
            shown = f"{value:g}"
        elif isinstance(value, list):
            shown = ",".join(value)  # as `-c key=a,b` takes it
        else:
            shown = str(value)
        assert rows[name] == shown, f"{name}: README says {rows[name]!r}, code says {shown!r}"
    assert set(rows) == set(documented)
