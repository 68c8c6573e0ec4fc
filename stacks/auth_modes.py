"""The auth modes for the stacks, localrun and tools: the image's docker/mlflow/auth_modes.py.

The MLflow image copies that file beside its entrypoint, which imports it by plain
name, so it stays the one definition; this module puts its folder on the path
(appended: nothing installed is shadowed) and re-exports it.
"""

import sys
from pathlib import Path

_IMAGE_MODULES = str(Path(__file__).resolve().parents[1] / "docker" / "mlflow")
if _IMAGE_MODULES not in sys.path:
    sys.path.append(_IMAGE_MODULES)

from auth_modes import (  # noqa: E402
    AUTH_MODES,
    DEFAULT_AUTH_MODE,
    MODES,
    AuthMode,
    ModeNeeds,
    ServerApp,
    needs_of,
    parse_mode,
)

__all__ = ["AUTH_MODES", "DEFAULT_AUTH_MODE", "MODES", "AuthMode", "ModeNeeds", "ServerApp", "needs_of", "parse_mode"]
