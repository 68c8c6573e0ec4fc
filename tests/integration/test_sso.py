"""sso mode end to end: people sign in at a real OpenID provider, code sends bearer tokens.

One stack (conftest `sso_stack`: PostgreSQL, MLflow with the mlflow-oidc-auth
plugin, nginx, npm `oidc-provider` on loopback) serves the module. Debian's
Chromium, driven by Playwright, signs people in on the provider's page;
screenshots are kept under .test-output/sso/. Code's tokens come from the
client-credentials grant; forged and misdirected ones must be refused before
any MLflow handler runs (nothing lands in MLflow's database).
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Iterator

import pytest
import requests
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from localrun.oidc import OidcClient, OidcProvider, OidcUser
from localrun.services import MlflowServer
from localrun.stack import SSO_ALLOWED_GROUP, SSO_CLIENT_ID, MlflowStack
from tests.integration.conftest import (
    SSO_ADMIN,
    SSO_COLLEAGUE,
    SSO_GROUP,
    SSO_MACHINE,
    SSO_OUTSIDER,
    SSO_SHORT_LIVED,
    SSO_USER,
    another_task,
)
from tests.integration.test_browser import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS

pytestmark = [pytest.mark.integration, SSO_GROUP]

SHOTS = SCREENSHOTS.parent / "sso"
TIMEOUT_MS = 60_000
SEARCH = "/api/2.0/mlflow/experiments/search?max_results=100"
# What mlflow-oidc-auth tells a person its group rules do not admit.
REFUSAL = "User is not allowed to login"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def experiment_rows(stack: MlflowStack, name: str) -> int:
    """Experiments called `name` in MLflow's own database."""
    assert stack.postgres is not None
    conn = stack.postgres.connect(stack.db_name)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM experiments WHERE name = %s", (name,))
            return int(cur.fetchone()[0])
    finally:
        conn.close()


@pytest.fixture(scope="module")
def scene(sso_stack: MlflowStack) -> dict[str, str]:
    """Two experiments the machine user created (so it manages them); nobody else was granted any."""
    assert sso_stack.oidc is not None
    token = sso_stack.oidc.client_credentials_token(SSO_MACHINE)
    tag = secrets.token_hex(3)
    ids = {}
    for name in (f"granted-to-alice-{tag}", f"machine-only-{tag}"):
        response = requests.post(
            sso_stack.proxy_url + "/api/2.0/mlflow/experiments/create", json={"name": name},
            headers=bearer(token), timeout=30,
        )  # fmt: skip
        assert response.status_code == 200, response.text
        ids[name] = response.json()["experiment_id"]
    return ids


@pytest.fixture(scope="module")
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def sign_in(browser, stack: MlflowStack, user: OidcUser):
    """A fresh browser opens the tracking URL, is sent to the provider and signs in there."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.goto(stack.proxy_url + "/", wait_until="domcontentloaded")
    assert stack.oidc is not None and page.url.startswith(stack.oidc.url + "/interaction/"), page.url
    page.locator('input[name="login"]').fill(user.username)
    page.locator('input[name="password"]').fill(user.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: url.startswith(stack.proxy_url), wait_until="commit")
    return page


@pytest.fixture(scope="module")
def second_task(sso_stack: MlflowStack) -> Iterator[MlflowServer]:
    yield from another_task(sso_stack)


def shot(page, name: str, record_property) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    record_property("screenshot", str(path))


def api(page, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    """A request from the page itself, as the UI makes them (its session cookie, its origin)."""
    script = """async ([method, path, body]) => {
        const r = await fetch(path, {method, headers: {'Content-Type': 'application/json'},
                                     body: body ? JSON.stringify(body) : undefined});
        let data = {}; try { data = await r.json(); } catch (e) {}
        return [r.status, data];
    }"""
    status, data = page.evaluate(script, [method, path, body])
    return status, data


def test_an_admin_grants_and_a_person_sees_only_what_was_granted(
    browser, sso_stack: MlflowStack, second_task: MlflowServer, scene: dict[str, str], record_property
) -> None:
    granted, private = scene
    # People exist in MLflow from their first sign-in on.
    alice = sign_in(browser, sso_stack, SSO_USER)
    admin = sign_in(browser, sso_stack, SSO_ADMIN)
    assert api(admin, "GET", "ajax-api/2.0/mlflow/users/current")[1]["username"] == SSO_ADMIN.email
    status, body = api(
        admin, "POST", f"ajax-api/2.0/mlflow/permissions/users/{SSO_USER.email}/experiments/{scene[granted]}",
        {"permission": "READ"},
    )  # fmt: skip
    assert status == 200, body

    alice.goto(sso_stack.proxy_url + "/#/experiments", wait_until="commit")
    alice.reload(wait_until="commit")
    alice.get_by_text(granted).first.wait_for()
    assert alice.get_by_text(private).count() == 0
    shot(alice, "alice-sees-the-granted-experiment", record_property)
    assert api(alice, "GET", "ajax-api/2.0/mlflow/users/current")[1]["username"] == SSO_USER.email
    names = {e["name"] for e in api(alice, "GET", "ajax-api" + SEARCH[4:])[1].get("experiments", [])}
    assert granted in names and private not in names
    # Not an admin: she may not grant herself the other one.
    status, _ = api(
        alice, "POST", f"ajax-api/2.0/mlflow/permissions/users/{SSO_USER.email}/experiments/{scene[private]}",
        {"permission": "READ"},
    )  # fmt: skip
    assert status == 403
    # Taking the grant back holds at once on another task too, which has just answered
    # her with the grant (the plugin's permission cache is off).
    get = f"{second_task.url}/ajax-api/2.0/mlflow/experiments/get?experiment_id={scene[granted]}"
    assert alice.context.request.get(get).status == 200
    path = f"ajax-api/2.0/mlflow/permissions/users/{SSO_USER.email}/experiments/{scene[granted]}"
    assert api(admin, "DELETE", path)[0] == 200
    assert alice.context.request.get(get).status == 403
    alice.context.close()
    admin.context.close()


MCP = "mlflow/mcp-servers"


def test_an_mcp_server_nobody_granted_is_read_under_the_default_permission(browser, sso_stack: MlflowStack) -> None:
    """The plugin lets every signed-in user read an ungranted MCP server; here NO_PERMISSIONS holds, as in accounts.

    An admin registers a server with a version, an access endpoint, an alias and a tag.
    A colleague's app client and a signed-in person hold no grant on it: every route that
    shows it (REST and ajax-api, get, versions, aliases, endpoints, both searches) keeps it
    from them until the admin grants READ, which opens reads and no writes
    (docker/mlflow/oidc_mcp_permissions.py).
    """
    assert sso_stack.oidc is not None
    name = f"com.example/tool-{secrets.token_hex(3)}"
    admin = sign_in(browser, sso_stack, SSO_ADMIN)
    alice = sign_in(browser, sso_stack, SSO_USER)
    server_json = {"name": name, "version": "1.0.0", "description": "what team A runs"}
    for path, body in [
        (f"ajax-api/3.0/{MCP}", {"name": name, "description": "team A only"}),
        (f"ajax-api/3.0/{MCP}/{name}/versions", {"server_json": server_json}),
        (f"ajax-api/3.0/{MCP}/{name}/endpoints", {"server_version": "1.0.0", "url": "http://10.0.0.7/mcp"}),
        (f"ajax-api/3.0/{MCP}/{name}/aliases", {"alias": "prod", "version": "1.0.0"}),
        (f"ajax-api/3.0/{MCP}/{name}/tags", {"key": "team", "value": "a"}),
    ]:
        status, data = api(admin, "POST", path, body)
        assert status == 200, (path, data)
    colleague = bearer(sso_stack.oidc.client_credentials_token(SSO_COLLEAGUE))
    reads = [f"{MCP}/{name}", f"{MCP}/{name}/versions", f"{MCP}/{name}/versions/1.0.0",
             f"{MCP}/{name}/aliases/prod", f"{MCP}/{name}/endpoints"]  # fmt: skip

    def colleague_get(path: str) -> requests.Response:
        return requests.get(f"{sso_stack.proxy_url}/{path}", headers=colleague, timeout=30)

    def listed(rows: list[dict], key: str) -> bool:
        return any(row.get(key) == name for row in rows)

    def seen_by_colleague() -> dict[str, int]:
        return {f"{prefix}/{path}": colleague_get(f"{prefix}/{path}").status_code
                for prefix in ("api/3.0", "ajax-api/3.0") for path in reads}  # fmt: skip

    assert set(seen_by_colleague().values()) == {403}, seen_by_colleague()
    for path in reads:
        assert api(alice, "GET", f"ajax-api/3.0/{path}")[0] == 403, path
    assert not listed(colleague_get(f"api/3.0/{MCP}?max_results=1000").json()["mcp_servers"], "name")
    assert not listed(colleague_get(f"api/3.0/{MCP}/endpoints").json()["mcp_access_endpoints"], "server_name")
    assert not listed(api(alice, "GET", f"ajax-api/3.0/{MCP}")[1]["mcp_servers"], "name")
    assert api(admin, "GET", f"ajax-api/3.0/{MCP}/{name}")[0] == 200

    status, data = api(admin, "POST", f"ajax-api/2.0/mlflow/permissions/users/{SSO_COLLEAGUE}/mcp-servers/{name}",
                       {"permission": "READ"})  # fmt: skip
    assert status == 201, data
    assert set(seen_by_colleague().values()) == {200}, seen_by_colleague()
    assert colleague_get(f"api/3.0/{MCP}/{name}").json()["description"] == "team A only"
    assert listed(colleague_get(f"api/3.0/{MCP}?max_results=1000").json()["mcp_servers"], "name")
    patched = requests.patch(f"{sso_stack.proxy_url}/api/3.0/{MCP}/{name}", json={"description": "bob was here"},
                             headers=colleague, timeout=30)  # fmt: skip
    assert patched.status_code == 403
    # The person still holds nothing.
    assert api(alice, "GET", f"ajax-api/3.0/{MCP}/{name}")[0] == 403
    assert api(admin, "GET", f"ajax-api/3.0/{MCP}/{name}")[1]["description"] == "team A only"
    alice.context.close()
    admin.context.close()


def test_a_signed_in_person_cannot_raise_herself(browser, sso_stack: MlflowStack, scene: dict[str, str]) -> None:
    """The plugin's other ways to power, tried from a real session (token calls need one).

    Each must be a 403 (the route exists and refused her, not a 404), and afterwards the
    machine user still works, keeps its experiment to itself, and she is no admin.
    """
    _, private = scene
    alice = sign_in(browser, sso_stack, SSO_USER)
    me, machine, group = SSO_USER.email, SSO_MACHINE, SSO_ALLOWED_GROUP
    attempts = [
        # a token that signs in as another user, and the machine user switched off
        ("PATCH", "api/2.0/mlflow/users/access-token", {"username": machine}),
        ("POST", f"api/2.0/mlflow/users/{machine}/tokens", {"name": "mine"}),
        ("PATCH", f"api/2.0/mlflow/users/{machine}/active", {"active": False}),
        ("POST", "api/2.0/mlflow/users", {"username": f"ghost-{secrets.token_hex(3)}", "display_name": "Ghost"}),
        # grants: hers, her whole group's
        ("POST", f"ajax-api/2.0/mlflow/permissions/users/{me}/experiments/{scene[private]}", {"permission": "MANAGE"}),
        (
            "POST",
            f"ajax-api/2.0/mlflow/permissions/groups/{group}/experiments/{scene[private]}",
            {"permission": "READ"},
        ),
        # the provisioning API's own credentials
        ("POST", "api/2.0/mlflow/scim/tokens", {"name": "mine"}),
    ]
    let_through = []
    for method, path, body in attempts:
        status, answer = api(alice, method, path, body)
        if status != 403:
            let_through.append(f"{method} {path}: {status} {answer}")
    assert not let_through, "not refused with 403:\n" + "\n".join(let_through)

    assert api(alice, "GET", "ajax-api/2.0/mlflow/users/current")[1]["is_admin"] is False
    get = f"{sso_stack.proxy_url}/api/2.0/mlflow/experiments/get?experiment_id={scene[private]}"
    assert alice.context.request.get(get).status == 403
    alice.context.close()
    assert sso_stack.oidc is not None
    token = sso_stack.oidc.client_credentials_token(SSO_MACHINE)
    assert requests.get(get, headers=bearer(token), timeout=30).status_code == 200


def test_a_person_outside_the_allowed_group_is_refused(browser, sso_stack: MlflowStack, record_property) -> None:
    page = sign_in(browser, sso_stack, SSO_OUTSIDER)
    # The plugin's sign-in page says why once it has rendered (before that it only says "Loading...").
    refusal = page.get_by_text(REFUSAL)
    refusal.first.wait_for(state="visible")
    assert page.url.startswith(sso_stack.proxy_url + "/oidc/ui/auth"), page.url
    shot(page, "outsider-refused", record_property)
    assert REFUSAL in page.locator("body").inner_text()
    assert page.context.request.get(sso_stack.proxy_url + SEARCH).status == 401
    page.context.close()


def test_a_session_holds_on_another_task_and_ends_at_sign_out(
    browser, sso_stack: MlflowStack, second_task: MlflowServer
) -> None:
    """Another task (same database, same secret key) honours the session; after sign-out none does."""
    page = sign_in(browser, sso_stack, SSO_USER)
    request = page.context.request
    try:
        # The browser's cookie is for 127.0.0.1 (any port): the other task gets it too.
        assert request.get(second_task.url + SEARCH).status == 200
        # MLflow ends its session on every task. The plugin then sends the browser to the
        # provider's sign-out (which asks first) only from a worker that has loaded the
        # provider's discovery document (a worker that served a sign-in step): the README
        # says so. Either way the browser lands on the plugin's sign-in page.
        page.goto(sso_stack.proxy_url + "/logout", wait_until="domcontentloaded")
        confirm = page.get_by_role("button", name="Yes, sign me out")
        landed = page.get_by_role("button", name="Login with OIDC")
        try:
            confirm.or_(landed).first.wait_for(timeout=30_000)
        except PlaywrightTimeoutError:
            pytest.fail(f"sign-out went nowhere; at {page.url}: {page.inner_text('body')[:400]!r}")
        if confirm.is_visible():
            confirm.click()
        page.wait_for_url(sso_stack.proxy_url + "/oidc/ui/auth**", wait_until="commit")
        assert request.get(second_task.url + SEARCH).status == 401
        assert request.get(sso_stack.proxy_url + SEARCH).status == 401
    finally:
        page.context.close()


def test_a_valid_token_acts_as_its_app_clients_user(sso_stack: MlflowStack, scene: dict[str, str]) -> None:
    assert sso_stack.oidc is not None
    token = sso_stack.oidc.client_credentials_token(SSO_MACHINE)
    me = requests.get(sso_stack.proxy_url + "/api/2.0/mlflow/users/current", headers=bearer(token), timeout=30)
    assert (me.status_code, me.json()["username"]) == (200, SSO_MACHINE)
    experiment_id = next(iter(scene.values()))
    run = requests.post(
        sso_stack.proxy_url + "/api/2.0/mlflow/runs/create", json={"experiment_id": experiment_id},
        headers=bearer(token), timeout=30,
    )  # fmt: skip
    assert run.status_code == 200, run.text
    # What it created is its own (MANAGE); another app client's user sees none of it.
    grant = requests.get(
        f"{sso_stack.proxy_url}/api/2.0/mlflow/permissions/users/{SSO_MACHINE}/experiments/{experiment_id}",
        headers=bearer(token), timeout=30,
    )  # fmt: skip
    assert grant.json()["experiment_permission"]["permission"] == "MANAGE"
    other = sso_stack.oidc.client_credentials_token(SSO_SHORT_LIVED)
    get_run = f"/api/2.0/mlflow/runs/get?run_id={run.json()['run']['info']['run_id']}"
    assert requests.get(sso_stack.proxy_url + get_run, headers=bearer(other), timeout=30).status_code == 403


def _b64(data: dict | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


@pytest.fixture(scope="module")
def foreign_provider(sso_stack: MlflowStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    """Another issuer with the same client names and audience: its tokens are not ours."""
    workdir = tmp_path_factory.mktemp("foreign-oidc")
    provider = OidcProvider(
        workdir, log_dir=workdir, users=[], clients=[OidcClient(SSO_MACHINE)], audience=SSO_CLIENT_ID
    )
    provider.start()
    yield provider
    provider.stop()


def bad_tokens(stack: MlflowStack, foreign: OidcProvider) -> dict[str, str]:
    assert stack.oidc is not None
    good = stack.oidc.client_credentials_token(SSO_MACHINE)
    header, payload, signature = good.split(".")
    expired = stack.oidc.client_credentials_token(SSO_SHORT_LIVED)
    claims = _claims(good)
    tokens = {
        "wrong audience": stack.oidc.client_credentials_token(SSO_MACHINE, resource="urn:other:api"),
        "foreign issuer": foreign.client_credentials_token(SSO_MACHINE),
        # Someone else's name on our client's signature.
        "tampered": f"{header}.{_b64({**claims, 'client_id': SSO_SHORT_LIVED, 'sub': SSO_SHORT_LIVED})}.{signature}",
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{payload}.",
        "garbage": "not-a-jwt",
    }
    time.sleep(max(0.0, _claims(expired)["exp"] - time.time()) + 1.5)
    tokens["expired"] = expired
    return tokens


def test_forged_expired_and_misdirected_tokens_get_401_and_reach_no_handler(
    sso_stack: MlflowStack, foreign_provider: OidcProvider
) -> None:
    assert sso_stack.oidc is not None
    tokens = bad_tokens(sso_stack, foreign_provider)
    for problem, token in tokens.items():
        name = f"made-with-{problem.replace(' ', '-')}-{secrets.token_hex(3)}"
        response = requests.post(
            sso_stack.proxy_url + "/api/2.0/mlflow/experiments/create", json={"name": name},
            headers=bearer(token), timeout=30,
        )  # fmt: skip
        assert response.status_code == 401, (problem, response.status_code, response.text)
        assert experiment_rows(sso_stack, name) == 0, problem
    # The short-lived client's user exists: a fresh token of it works, expiry alone refused it.
    fresh = sso_stack.oidc.client_credentials_token(SSO_SHORT_LIVED)
    assert requests.get(sso_stack.proxy_url + SEARCH, headers=bearer(fresh), timeout=30).status_code == 200
