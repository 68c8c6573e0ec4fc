"""The places that spell the auth modes outside Python agree with docker/mlflow/auth_modes.py."""

import re
from pathlib import Path

from tests.docker.image_modules import image_module

ROOT = Path(__file__).resolve().parents[2]


def test_nginx_entrypoint_knows_exactly_the_modes_and_the_default() -> None:
    with image_module("auth_modes") as modes:
        script = (ROOT / "docker/nginx/entrypoint.sh").read_text()
        case = script.split("case $MLFLOW_AUTH_MODE in", 1)[1].split("\n    *) fail", 1)[0]
        blocks = dict(re.findall(r"^    ([a-z]+)\)\n(.*?)^        ;;", case, re.M | re.S))
        assert tuple(blocks) == modes.AUTH_MODES
        assert f"MLFLOW_AUTH_MODE=${{MLFLOW_AUTH_MODE:-{modes.DEFAULT_AUTH_MODE}}}" in script
        for mode, needs in modes.MODES.items():
            assert ("auth_basic=off" not in blocks[mode]) == needs.nginx_basic_auth, mode


def test_makefile_default_and_readme_table_match_the_module() -> None:
    with image_module("auth_modes") as modes:
        makefile = (ROOT / "Makefile").read_text()
        assert re.search(r"^AUTH_MODE \?= (\S+)$", makefile, re.M)[1] == modes.DEFAULT_AUTH_MODE  # type: ignore[index]
        readme = (ROOT / "README.md").read_text()
        table = readme.split("| `auth_mode` |", 1)[1].split("\n\n", 1)[0]
        assert tuple(re.findall(r"^\| `([a-z]+)`", table, re.M)) == modes.AUTH_MODES
        assert set(modes.MODES) == set(modes.AUTH_MODES)
