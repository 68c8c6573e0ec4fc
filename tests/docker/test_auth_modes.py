"""The places that spell the auth modes outside Python agree with docker/mlflow/auth_modes.py."""

import re
from pathlib import Path
from typing import get_args

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
            # NGINX_IAM_LISTEN is refused where the row says the app cannot map IAM callers.
            flags = re.findall(r"^        iam_sign_in=([01])$", blocks[mode], re.M)
            assert flags == [str(int(needs.iam_sign_in))], mode


def test_makefile_default_and_readme_table_match_the_module() -> None:
    with image_module("auth_modes") as modes:
        makefile = (ROOT / "Makefile").read_text()
        assert re.search(r"^AUTH_MODE \?= (\S+)$", makefile, re.M)[1] == modes.DEFAULT_AUTH_MODE  # type: ignore[index]
        readme = (ROOT / "README.md").read_text()
        table = readme.split("| `auth_mode` |", 1)[1].split("\n\n", 1)[0]
        assert tuple(re.findall(r"^\| `([a-z]+)`", table, re.M)) == modes.AUTH_MODES
        assert set(modes.MODES) == set(modes.AUTH_MODES)


def test_every_mode_has_exactly_one_checker_and_what_its_app_needs() -> None:
    """A row nobody checks credentials in would be an open server; a row the code cannot prepare would not start."""
    with image_module("auth_modes") as modes, image_module("entrypoint") as entrypoint:
        assert set(entrypoint.APP_SETUPS) == set(get_args(modes.ServerApp))
        for mode, needs in modes.MODES.items():
            app_checks = needs.server_app != "mlflow"
            assert needs.nginx_basic_auth != app_checks, mode
            assert (needs.auth_database is not None) == app_checks == needs.session_key == needs.permissions, mode
            assert not needs.admin_login or needs.server_app == "basic-auth", mode
            assert needs.sign_in_provider == (needs.server_app == "oidc"), mode
            assert needs.uses_credentials == (needs.nginx_basic_auth or needs.admin_login), mode


def test_a_name_is_a_mode_only_as_the_table_spells_it() -> None:
    """One check of a mode name, whose message each caller prefixes with its setting's name."""
    import pytest

    from localrun.stack import ServiceError, check_mode
    from stacks.auth_modes import AUTH_MODES, parse_mode

    assert [parse_mode(mode) for mode in AUTH_MODES] == list(AUTH_MODES)
    for wrong in ("Accounts", " sso", "oidc", ""):
        with pytest.raises(ValueError, match=f"^must be one of shared, accounts, sso, got {wrong!r}$"):
            parse_mode(wrong)
    with pytest.raises(ServiceError, match="^auth mode must be one of shared, accounts, sso, got 'oidc'$"):
        check_mode("oidc")  # what MlflowStack and its mode switch ask first
