"""Each patch of MLflow's auth app is installed only on the MLflow source it was reviewed against
(docker/mlflow/reviewed_source.py); on any other it is left out with one log line and MLflow answers."""

from __future__ import annotations

import base64
import importlib
import logging
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from flask import Flask, Response
from mlflow.server import app as mlflow_app
from mlflow.server import auth as mlflow_auth
from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore as AuthStore
from werkzeug.datastructures import Authorization

from tests.docker.image_modules import image_module
from tests.mlflow_databases import fresh_database

PASSWORD = "a-long-enough-password-1"
# The password older MLflow versions shipped for the admin, which MLflow refuses an admin since.
LEGACY = mlflow_auth._LEGACY_DEFAULT_ADMIN_PASSWORD


@pytest.fixture(scope="module")
def modules() -> Iterator[dict[str, ModuleType]]:
    """The image's modules; credential_cache is loaded by each test that needs it (it installs patches)."""
    with (
        image_module("reviewed_source") as reviewed,
        image_module("auth_lookups") as lookups,
        image_module("alias_permissions") as aliases,
    ):
        yield {"reviewed_source": reviewed, "auth_lookups": lookups, "alias_permissions": aliases}


@pytest.fixture
def pristine(modules: dict[str, ModuleType], monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow's own auth module and app for the test, put back after it whatever it installs."""
    for name in ("store", "_get_tracking_store"):
        monkeypatch.setattr(mlflow_auth, name, getattr(mlflow_auth, name))
    monkeypatch.setattr(mlflow_app, "view_functions", dict(mlflow_app.view_functions))


def load_credential_cache(modules: dict[str, ModuleType]) -> ModuleType:
    """credential_cache.py as MLflow imports it in a worker (which installs what fits this MLflow)."""
    modules["credential_cache"] = importlib.reload(importlib.import_module("credential_cache"))
    return modules["credential_cache"]


def every_patch(modules: dict[str, ModuleType]) -> dict[str, tuple[dict, dict]]:
    """Patch -> (what it was reviewed against, texts for names that are not one object's source)."""
    lookups, cache = modules["auth_lookups"], load_credential_cache(modules)
    patches = {f"auth_lookups.py: {name}": (reviewed, lookups.SOURCES) for name, reviewed in lookups.REVIEWED.items()}
    patches["credential_cache.py: cache"] = (cache.REVIEWED_FOR_CACHE, {})
    patches["credential_cache.py: current-user"] = (cache.REVIEWED_FOR_CURRENT_USER, {})
    with image_module("garbage_collection") as gc:
        patches["garbage_collection.py: mlflow-artifacts without a server"] = (gc.REVIEWED, {})
    patches["alias_permissions.py"] = (modules["alias_permissions"].REVIEWED, {})
    with image_module("oidc_alias_permissions") as oidc_aliases:
        patches["oidc_alias_permissions.py"] = (oidc_aliases.REVIEWED, {})
    with image_module("oidc_iam_sign_in") as oidc_iam:
        patches["oidc_iam_sign_in.py"] = (oidc_iam.REVIEWED, {})
    with image_module("oidc_mcp_permissions") as oidc_mcp:
        patches["oidc_mcp_permissions.py"] = (oidc_mcp.REVIEWED, {})
    with image_module("server_exec") as server_exec:
        patches["server_exec.py"] = (server_exec.REVIEWED, {})
    return patches


def test_the_pinned_mlflow_is_what_every_patch_was_reviewed_against(
    modules: dict[str, ModuleType], pristine: None
) -> None:
    reviewed_source = modules["reviewed_source"]
    for patch, (reviewed, sources) in every_patch(modules).items():
        assert reviewed_source.changed(reviewed, sources) == [], (
            f"{patch}: MLflow's source of these names changed since the review; read them again, check that the "
            "patch still gives MLflow's answers, then record reviewed_source.current_sha256() of each"
        )


def test_a_missing_name_is_a_change(modules: dict[str, ModuleType]) -> None:
    changed = modules["reviewed_source"].changed
    assert changed({"mlflow.server.auth": {"_a_name_of_a_later_release": "0" * 64}}) == [
        "mlflow.server.auth:_a_name_of_a_later_release"
    ]
    assert changed({"mlflow.server.no_such_module": {"x": "0" * 64}}) == ["mlflow.server.no_such_module:x"]


def a_copy_of(function: object) -> object:
    """Another function that does the same: a release that changed its source."""

    def changed(*args: object, **kwargs: object) -> object:
        return function(*args, **kwargs)  # type: ignore[operator]

    return changed


def test_a_changed_auth_function_leaves_the_run_lookup_out(
    modules: dict[str, ModuleType], pristine: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    lookups = modules["auth_lookups"]
    stock = a_copy_of(mlflow_auth._get_tracking_store)
    monkeypatch.setattr(mlflow_auth, "_get_tracking_store", stock)
    with caplog.at_level(logging.WARNING):
        assert lookups.install() == {"users"}
    assert mlflow_auth._get_tracking_store is stock  # MLflow's (changed) own function, not wrapped
    assert isinstance(mlflow_auth.store, lookups.RequestUserStore)  # the other is installed
    assert [record.getMessage() for record in caplog.records] == [
        "MLflow's mlflow.server.auth:_get_tracking_store is not the reviewed one (auth_lookups.py: runs): "
        "MLflow's own lookups answer, correct but slower"
    ]


def test_a_changed_user_store_leaves_the_user_lookup_out(
    modules: dict[str, ModuleType], pristine: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    lookups = modules["auth_lookups"]
    stock_store = mlflow_auth.store
    monkeypatch.setattr(AuthStore, "get_user", a_copy_of(AuthStore.get_user))
    with caplog.at_level(logging.WARNING):
        assert lookups.install() == {"runs"}
    assert mlflow_auth.store is stock_store
    assert [record.getMessage() for record in caplog.records] == [
        "MLflow's mlflow.server.auth.sqlalchemy_store:SqlAlchemyStore.get_user is not the reviewed one "
        "(auth_lookups.py: users): MLflow's own lookups answer, correct but slower"
    ]


def test_a_new_store_method_is_a_change(modules: dict[str, ModuleType], monkeypatch: pytest.MonkeyPatch) -> None:
    """RequestUserStore tells reads from changes by name: a method it has not seen may change users."""
    lookups = modules["auth_lookups"]
    monkeypatch.setattr(AuthStore, "get_or_create_user", lambda self, name: None, raising=False)
    assert modules["reviewed_source"].changed(lookups.REVIEWED["users"], lookups.SOURCES) == [
        "mlflow.server.auth.sqlalchemy_store:SqlAlchemyStore.<public method names>"
    ]


def test_a_new_caller_of_get_run_is_a_change(modules: dict[str, ModuleType], monkeypatch: pytest.MonkeyPatch) -> None:
    """The run lookup answers get_run with a run's info only: a new caller may read more."""
    lookups = modules["auth_lookups"]

    def validate_can_read_run_tags() -> bool:
        return bool(mlflow_auth._get_tracking_store().get_run("r").data.tags)

    validate_can_read_run_tags.__module__ = mlflow_auth.__name__
    monkeypatch.setattr(mlflow_auth, "validate_can_read_run_tags", validate_can_read_run_tags, raising=False)
    assert modules["reviewed_source"].changed(lookups.REVIEWED["runs"], lookups.SOURCES) == [
        "mlflow.server.auth:<every function calling get_run>"
    ]


@pytest.fixture
def users(tmp_path: Path, pristine: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[AuthStore]:
    """MLflow's own user store (SQLite) as the auth app's: an admin, an ordinary user, one with the legacy password."""
    store = AuthStore()
    store.init_db(fresh_database("auth", tmp_path / "auth.db"))
    store.create_user("root", LEGACY, is_admin=True)  # as on a server upgraded from an old default
    store.create_user("alice", PASSWORD)
    store.create_user("dave", LEGACY)  # an ordinary user may have it
    monkeypatch.setattr(mlflow_auth, "store", store)
    yield store
    store.engine.dispose()


def basic(username: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


CASES = [
    basic("alice", PASSWORD), basic("alice", PASSWORD + "x"), basic("mallory", PASSWORD),
    basic("root", LEGACY), basic("dave", LEGACY), {"Authorization": "Bearer abc"}, {},
]  # fmt: skip


def answer(check: object, headers: dict[str, str]) -> tuple[str, int | None, str | None]:
    """What a check says to one request (each in its own request, as a server sees them)."""
    with Flask(__name__).test_request_context("/api/2.0/mlflow/experiments/search", headers=headers):
        result = check()  # type: ignore[operator]
    if isinstance(result, Response):
        return "response", result.status_code, result.headers.get("WWW-Authenticate")
    assert isinstance(result, Authorization)
    return "signed in", None, result.username


def test_the_cache_answers_as_mlflows_check(modules: dict[str, ModuleType], users: AuthStore) -> None:
    cache = load_credential_cache(modules)
    assert cache.CACHING
    stock = [answer(mlflow_auth.authenticate_request_basic_auth, headers) for headers in CASES]
    assert ("signed in", None, "alice") in stock and ("response", 401, 'Basic realm="mlflow"') in stock
    for _ in range(2):  # checked, then remembered
        assert [answer(cache.authenticate_request, headers) for headers in CASES] == stock


def test_a_remembered_sign_in_does_not_outlive_a_promotion(modules: dict[str, ModuleType], users: AuthStore) -> None:
    """Promotion changes no password hash; MLflow refuses an admin the legacy password."""
    cache = load_credential_cache(modules)
    dave = basic("dave", LEGACY)
    assert answer(cache.authenticate_request, dave) == ("signed in", None, "dave")
    users.update_user("dave", is_admin=True)
    assert answer(cache.authenticate_request, dave) == ("response", 401, 'Basic realm="mlflow"')
    assert answer(mlflow_auth.authenticate_request_basic_auth, dave) == ("response", 401, 'Basic realm="mlflow"')
    users.update_user("dave", is_admin=False)
    assert answer(cache.authenticate_request, dave) == ("signed in", None, "dave")


def test_a_user_made_again_is_checked_again(modules: dict[str, ModuleType], users: AuthStore) -> None:
    cache = load_credential_cache(modules)
    alice = basic("alice", PASSWORD)
    assert answer(cache.authenticate_request, alice) == ("signed in", None, "alice")
    users.delete_user("alice")
    assert answer(cache.authenticate_request, alice) == ("response", 401, 'Basic realm="mlflow"')
    users.create_user("alice", PASSWORD + "-new")
    assert answer(cache.authenticate_request, alice) == ("response", 401, 'Basic realm="mlflow"')


def test_a_changed_check_leaves_the_cache_out(
    modules: dict[str, ModuleType], users: AuthStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    stock = mlflow_auth._is_disabled_legacy_admin_login
    monkeypatch.setattr(mlflow_auth, "_is_disabled_legacy_admin_login", a_copy_of(stock))
    with caplog.at_level(logging.WARNING):
        cache = load_credential_cache(modules)
    assert not cache.CACHING
    assert [record.getMessage() for record in caplog.records] == [
        "MLflow's mlflow.server.auth:_is_disabled_legacy_admin_login is not the reviewed one "
        "(credential_cache.py: cache): every request's password is checked by MLflow's own check, correct but slower"
    ]
    expected = [answer(mlflow_auth.authenticate_request_basic_auth, headers) for headers in CASES]
    assert [answer(cache.authenticate_request, headers) for headers in CASES] == expected
    calls: list[int] = []
    monkeypatch.setattr(mlflow_auth, "authenticate_request_basic_auth", lambda: calls.append(1) or "stock answer")
    assert answer_raw(cache.authenticate_request, basic("alice", PASSWORD)) == "stock answer"
    assert calls == [1]  # straight to MLflow's own check, nothing remembered in between


def answer_raw(check: object, headers: dict[str, str]) -> object:
    with Flask(__name__).test_request_context("/", headers=headers):
        return check()  # type: ignore[operator]


def test_patches_left_out_on_purpose(
    modules: dict[str, ModuleType], users: AuthStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """MLFLOW_AUTH_PATCHES_OFF, for the benchmark: those patches are not installed, and nothing is logged."""
    monkeypatch.setenv("MLFLOW_AUTH_PATCHES_OFF", "cache, users,no-such-patch")
    with caplog.at_level(logging.WARNING):
        cache = load_credential_cache(modules)
    assert cache.OFF == {"cache", "users"} and not cache.CACHING
    assert mlflow_auth.store is users
    assert hasattr(mlflow_auth._get_tracking_store, "__wrapped__")  # "runs" is still installed
    assert caplog.records == []


def test_the_alias_patch_guards_both_set_alias_routes_and_leaves_stock_mlflow_on_other_source(
    modules: dict[str, ModuleType], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    aliases = modules["alias_permissions"]
    monkeypatch.setattr(mlflow_auth, "BEFORE_REQUEST_VALIDATORS", dict(mlflow_auth.BEFORE_REQUEST_VALIDATORS))
    routes = {
        ("/api/2.0/mlflow/registered-models/alias", "POST"),
        ("/ajax-api/2.0/mlflow/registered-models/alias", "POST"),
    }
    changed = {**aliases.REVIEWED["mlflow.server.auth"], "_find_validator": "0" * 64}
    monkeypatch.setattr(aliases, "REVIEWED", {"mlflow.server.auth": changed})
    with caplog.at_level(logging.WARNING):
        assert aliases.install() == []
    assert "_find_validator" in caplog.text
    assert all(
        mlflow_auth.BEFORE_REQUEST_VALIDATORS[r] is mlflow_auth.validate_can_set_model_or_prompt_version_alias
        for r in routes
    )
    monkeypatch.undo()
    monkeypatch.setattr(mlflow_auth, "BEFORE_REQUEST_VALIDATORS", dict(mlflow_auth.BEFORE_REQUEST_VALIDATORS))
    assert set(aliases.install()) == routes
    assert all(mlflow_auth.BEFORE_REQUEST_VALIDATORS[r] is aliases.validate_can_set_alias_with_manage for r in routes)


def test_the_sso_alias_patch_guards_both_set_alias_routes_and_leaves_the_plugin_on_other_source(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import mlflow_oidc_auth.hooks.before_request as hooks
    from mlflow.protos.model_registry_pb2 import SetRegisteredModelAlias
    from mlflow_oidc_auth.validators import registered_model

    routes = {
        ("/api/2.0/mlflow/registered-models/alias", "POST"),
        ("/ajax-api/2.0/mlflow/registered-models/alias", "POST"),
    }
    with image_module("oidc_alias_permissions") as aliases:
        for table in ("BEFORE_REQUEST_VALIDATORS", "BEFORE_REQUEST_HANDLERS"):
            monkeypatch.setattr(hooks, table, dict(getattr(hooks, table)))
        module = "mlflow_oidc_auth.hooks.before_request"
        changed = {**aliases.REVIEWED, module: {**aliases.REVIEWED[module], "_find_validator": "0" * 64}}
        monkeypatch.setattr(aliases, "REVIEWED", changed)
        with caplog.at_level(logging.WARNING):
            assert aliases.install() == []
        assert "_find_validator" in caplog.text
        stock = registered_model.validate_can_update_registered_model
        assert all(hooks.BEFORE_REQUEST_VALIDATORS[r] is stock for r in routes)
        monkeypatch.undo()
        for table in ("BEFORE_REQUEST_VALIDATORS", "BEFORE_REQUEST_HANDLERS"):
            monkeypatch.setattr(hooks, table, dict(getattr(hooks, table)))
        assert set(aliases.install()) == routes
        manage = registered_model.validate_can_manage_registered_model
        assert all(hooks.BEFORE_REQUEST_VALIDATORS[r] is manage for r in routes)
        assert hooks.BEFORE_REQUEST_HANDLERS[SetRegisteredModelAlias] is manage


def test_the_sso_mcp_patch_puts_the_default_permission_on_reads_and_leaves_the_plugin_on_other_source(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import mlflow_oidc_auth.middleware.mcp_server_registry as registry

    stock = registry._may_read
    with image_module("oidc_mcp_permissions") as mcp:
        module = "mlflow_oidc_auth.middleware.mcp_server_registry"
        changed = {**mcp.REVIEWED, module: {**mcp.REVIEWED[module], "_may_read": "0" * 64}}
        monkeypatch.setattr(mcp, "REVIEWED", changed)
        monkeypatch.setattr(registry, "_may_read", stock)
        with caplog.at_level(logging.WARNING):
            assert mcp.install() is False
        assert f"{module}:_may_read" in caplog.text and mcp.CONSEQUENCE in caplog.text
        assert registry._may_read is stock
        monkeypatch.undo()
        monkeypatch.setattr(registry, "_may_read", stock)
        assert mcp.install() is True
        assert registry._may_read is mcp.may_read
