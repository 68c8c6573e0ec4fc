"""Tests of lab/; importing this package makes lab/ and lab/source_dir importable
the way the notebook and the training job see them."""

import sys
from pathlib import Path

LAB_DIR = Path(__file__).resolve().parents[2] / "lab"
for _path in (LAB_DIR / "source_dir", LAB_DIR):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
