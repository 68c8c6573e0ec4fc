"""Make lab/ and lab/source_dir importable the way the notebook and training job see them."""

from __future__ import annotations

import sys
from pathlib import Path

LAB_DIR = Path(__file__).resolve().parents[2] / "lab"
for path in (LAB_DIR / "source_dir", LAB_DIR):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
