"""Where the project's Lambda code lives: stacks/functions/<name>/, handler module index.py."""

from pathlib import Path

from aws_cdk import aws_lambda as lambda_

FUNCTIONS_DIR = Path(__file__).resolve().parents[1] / "functions"
# Bytecode caches (left by tests and local runs importing the code) stay out of every
# asset built from a source folder, so its hash and contents follow the source alone.
NOT_SOURCE = ["__pycache__", "*.pyc"]


def function_dir(name: str) -> Path:
    return FUNCTIONS_DIR / name


def asset_code(name: str) -> lambda_.Code:
    """The folder as a zip asset: index.py and the modules beside it (no bytecode caches)."""
    return lambda_.Code.from_asset(str(function_dir(name)), exclude=NOT_SOURCE)


def inline_code(name: str) -> lambda_.Code:
    """index.py written into the template (at most 4 KB, standard library only).

    For a custom resource handler that needs the ``cfnresponse`` module, which
    Lambda provides only to code written into the template.
    """
    return lambda_.Code.from_inline((function_dir(name) / "index.py").read_text(encoding="utf-8"))
