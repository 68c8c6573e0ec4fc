"""The benchmarks refuse counts and lengths that are not above 0 before any load starts."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from localrun.load import positive

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("kind", "text", "value"), [(int, "8", 8), (float, "0.5", 0.5), (float, "4", 4.0)])
def test_a_number_above_zero_is_taken(kind: type, text: str, value: float) -> None:
    parsed = positive(kind)(text)
    assert parsed == value and type(parsed) is kind


@pytest.mark.parametrize(
    ("kind", "text"), [(int, "0"), (int, "-3"), (int, "2.5"), (int, "eight"), (float, "0"), (float, "nan")]
)
def test_anything_else_is_a_usage_error(kind: type, text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=f"number above 0, got {text!r}"):
        positive(kind)(text)


@pytest.mark.parametrize(
    ("script", "argument", "expected"),
    [
        ("accounts_and_artifacts.py", "--artifact-mb", "a whole number"),
        ("proxy_overhead.py", "--seconds", "a number"),
        ("server_memory.py", "--clients", "a whole number"),
        ("iam_sign_in.py", "--rounds", "a whole number"),
    ],
)
def test_a_benchmark_stops_at_once_with_one_line(script: str, argument: str, expected: str) -> None:
    command = [sys.executable, str(REPO / "benchmarks" / script), f"{argument}=0"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    last = result.stderr.splitlines()[-1]
    assert last == f"{script}: error: argument {argument}: expected {expected} above 0, got '0'"
    assert result.stdout == ""
