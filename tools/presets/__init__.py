"""Named sets of settings (tools/presets/<name>.json) that `make ... PRESET=<name>` passes as `-c key=value`.

A preset is a plain context file: its keys are configuration keys, its values
are checked by the same validation as cdk.json's when the app synthesizes.
"""

import json
from pathlib import Path
from typing import Any

PRESETS_DIR = Path(__file__).resolve().parent


def names() -> list[str]:
    return sorted(path.stem for path in PRESETS_DIR.glob("*.json"))


def load(name: str) -> dict[str, Any]:
    path = PRESETS_DIR / f"{name}.json"
    if not path.is_file():
        raise ValueError(f"no preset {name!r}; presets: {', '.join(names())}")
    return dict(json.loads(path.read_text(encoding="utf-8")))


def context_args(settings: dict[str, Any]) -> list[str]:
    """The `-c key=value` arguments of the CDK CLI for these settings (lists as a,b)."""
    args = []
    for key, value in settings.items():
        shown = ",".join(map(str, value)) if isinstance(value, list) else str(value)
        args += ["-c", f"{key}={shown}"]
    return args
