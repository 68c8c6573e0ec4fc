"""The MLflow version, read from the one file that pins it."""

import re
from pathlib import Path

PINNED_REQUIREMENTS = Path(__file__).resolve().parent.parent / "docker" / "mlflow" / "requirements.txt"

_PIN = re.compile(r"^\s*mlflow\s*==\s*([0-9][0-9A-Za-z.\-+]*)\s*(?:#.*)?$")


def pinned_mlflow_version(requirements: Path = PINNED_REQUIREMENTS) -> str:
    """Return the exact version pinned as ``mlflow==X`` in ``requirements``."""
    for line in requirements.read_text(encoding="utf-8").splitlines():
        match = _PIN.match(line)
        if match:
            return match.group(1)
    raise ValueError(f"{requirements} does not pin mlflow with 'mlflow==<version>'")
