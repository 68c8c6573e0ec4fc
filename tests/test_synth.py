"""The synthesized-variant cache (tests/synth.py) is read only for the sources it was made from."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.synth import CACHE_ROOT, REPO, SYNTH_INPUTS, source_key, synth_directory, synth_templates


def _small_repo(root: Path) -> Path:
    for name, text in {
        "stacks/stack.py": "A = 1\n",
        "docker/mlflow/Dockerfile": "FROM python\n",
        "app.py": "import stacks\n",
        "cdk.json": '{"context": {}}\n',
        "tests/synth.py": "B = 2\n",
        "tests/other.py": "C = 3\n",
        "docs/notes.md": "notes\n",
    }.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.mark.parametrize(
    "change",
    [
        "stacks/stack.py",
        "docker/mlflow/Dockerfile",
        "app.py",
        "cdk.json",
        "tests/synth.py",
        "stacks/components/new.py",
        "docker/nginx/new.conf",
    ],
)
def test_any_change_to_an_input_is_a_new_key(tmp_path: Path, change: str) -> None:
    repo = _small_repo(tmp_path)
    before = source_key.__wrapped__(repo)
    (repo / change).parent.mkdir(parents=True, exist_ok=True)
    (repo / change).write_text((repo / change).read_text() + "# changed\n" if (repo / change).exists() else "x\n")
    assert source_key.__wrapped__(repo) != before


def test_files_no_synthesis_reads_keep_the_key(tmp_path: Path) -> None:
    repo = _small_repo(tmp_path)
    before = source_key.__wrapped__(repo)
    (repo / "tests/other.py").write_text("C = 4\n")
    (repo / "docs/notes.md").write_text("more notes\n")
    (repo / "stacks/__pycache__").mkdir()
    (repo / "stacks/__pycache__/stack.cpython-311.pyc").write_bytes(b"\0")
    assert source_key.__wrapped__(repo) == before


def test_every_project_module_a_synthesis_imports_is_an_input() -> None:
    """A module outside SYNTH_INPUTS that the stacks import would change templates without changing the key.

    Importing tests.synth imports the stacks' modules (none imports project code inside a function).
    """
    script = (
        "import json, sys\n"
        "import tests.synth\n"
        "print(json.dumps([getattr(m, '__file__', None) for m in list(sys.modules.values())]))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True)
    files = [Path(f).resolve() for f in json.loads(result.stdout.splitlines()[-1]) if f]
    ours = [f.relative_to(REPO) for f in files if f.is_relative_to(REPO) and not f.is_relative_to(REPO / ".venv")]
    assert Path("stacks/app_builder.py") in ours
    # tests/__init__.py is the package tests.synth is imported through.
    outside = [f for f in ours if f != Path("tests/__init__.py") and not any(f.is_relative_to(i) for i in SYNTH_INPUTS)]
    assert outside == []


def test_no_stack_module_imports_project_code_inside_a_function() -> None:
    """Which the test above relies on: every project module a synthesis runs is imported with tests.synth."""
    project = {p.stem for root in (REPO, REPO / "docker" / "mlflow") for p in root.iterdir()}
    late = []
    for path in (REPO / "stacks").rglob("*.py"):
        for function in ast.walk(ast.parse(path.read_text())):
            if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                for node in ast.walk(function):
                    modules = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                    modules += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                    late += [f"{path.relative_to(REPO)}: {m}" for m in modules if m.split(".")[0] in project]
    assert late == []


def test_a_variant_is_kept_under_the_current_source_key() -> None:
    templates = synth_templates()
    directory = synth_directory()
    assert directory.parent == CACHE_ROOT / source_key()
    assert json.loads((directory / "templates-by-stack.json").read_text()) == templates
    for stack, template in templates.items():
        assert json.loads((directory / f"{stack}.template.json").read_text()) == template
