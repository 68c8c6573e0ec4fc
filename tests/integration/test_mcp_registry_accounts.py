"""accounts mode: MLflow's MCP server registry keeps a server from a colleague nobody granted it.

MLflow 3 registers MCP servers (`/api/3.0/mlflow/mcp-servers`: a description,
versions with their server.json, access-endpoint URLs, aliases, tags), served by
FastAPI rather than the Flask routes the other permission tests go through. User A
registers one; user B (default permission NO_PERMISSIONS) tries it under other
spellings of its name, through a server of B's own, and through the searches.
MLflow's auth app holds on every one of them today; this keeps it so across upgrades.
The sso plugin needed a patch for the same (test_sso.py).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass

import pytest

from localrun.stack import MlflowStack
from tests.integration.mlflow_users import ACCOUNTS_GROUP, Account, Accounts, api
from tests.integration.test_audit_trail import audit_lines

pytestmark = [pytest.mark.integration, ACCOUNTS_GROUP]

REGISTRY = "/api/3.0/mlflow/mcp-servers"


@dataclass
class Registered:
    a: Account
    b: Account
    name: str
    own: str
    endpoint_id: str


def ok(stack: MlflowStack, account: Account, method: str, path: str, **kwargs: object) -> dict:
    response = api(stack, method, path, account, **kwargs)
    assert response.status_code == 200, (path, response.status_code, response.text)
    return response.json()


@pytest.fixture(scope="module")
def registered(accounts_stack: MlflowStack, accounts: Accounts) -> Registered:
    a, b = accounts.new_user("mcp-a"), accounts.new_user("mcp-b")
    tag = secrets.token_hex(3)
    name, own = f"com.team-a/tool-{tag}", f"com.team-b/tool-{tag}"
    for account, server in ((a, name), (b, own)):
        ok(accounts_stack, account, "POST", REGISTRY, json={"name": server, "description": f"{server} only"})
        version = {"server_json": {"name": server, "version": "1.0.0", "description": "d"}}
        ok(accounts_stack, account, "POST", f"{REGISTRY}/{server}/versions", json=version)
    endpoint = ok(accounts_stack, a, "POST", f"{REGISTRY}/{name}/endpoints",
                  json={"server_version": "1.0.0", "url": "http://10.0.0.7/mcp"})  # fmt: skip
    ok(accounts_stack, a, "POST", f"{REGISTRY}/{name}/aliases", json={"alias": "prod", "version": "1.0.0"})
    ok(accounts_stack, a, "POST", f"{REGISTRY}/{name}/tags", json={"key": "team", "value": "a"})
    return Registered(a, b, name, own, endpoint["id"])


def test_a_colleague_reaches_no_route_of_it_under_any_spelling(
    accounts_stack: MlflowStack, registered: Registered
) -> None:
    r = registered
    namespace, slug = r.name.split("/")
    spellings = [
        r.name, f"/{r.name}", f"{namespace}//{slug}", f"{r.name}/", f"{namespace}%2F{slug}",
        f"{r.own}/../../{r.name}", f"{namespace.upper()}/{slug}",
    ]  # fmt: skip
    for prefix in ("/api/3.0/mlflow/mcp-servers", "/ajax-api/3.0/mlflow/mcp-servers"):
        for spelling in spellings:
            for suffix in ("", "/versions", "/versions/1.0.0", "/aliases/prod", "/endpoints",
                           f"/endpoints/{r.endpoint_id}"):  # fmt: skip
                response = api(accounts_stack, "GET", f"{prefix}/{spelling}{suffix}", r.b)
                assert response.status_code in (403, 404), (spelling, suffix, response.status_code, response.text)
                assert "only" not in response.text and "10.0.0.7" not in response.text, response.text
    writes = [
        ("PATCH", f"{REGISTRY}/{r.name}", {"description": "b was here"}),
        ("POST", f"{REGISTRY}/{r.name}/tags", {"key": "team", "value": "b"}),
        ("DELETE", f"{REGISTRY}/{r.name}/tags/team", None),
        ("POST", f"{REGISTRY}/{r.name}/versions",
         {"server_json": {"name": r.name, "version": "2.0.0", "description": "b's"}}),
        ("POST", f"{REGISTRY}/{r.name}/aliases", {"alias": "prod", "version": "1.0.0"}),
        ("PATCH", f"{REGISTRY}/{r.name}/endpoints/{r.endpoint_id}", {"url": "http://b.example/mcp"}),
        ("DELETE", f"{REGISTRY}/{r.name}/endpoints/{r.endpoint_id}", None),
        ("DELETE", f"{REGISTRY}/{r.name}", None),
    ]  # fmt: skip
    for method, path, body in writes:
        response = api(accounts_stack, method, path, r.b, json=body)
        assert response.status_code == 403, (method, path, response.status_code, response.text)
    # B's own server does not open A's endpoint or take A's name as a version's.
    for method, body in (("GET", None), ("PATCH", {"url": "http://b.example/mcp"}), ("DELETE", None)):
        response = api(accounts_stack, method, f"{REGISTRY}/{r.own}/endpoints/{r.endpoint_id}", r.b, json=body)
        assert response.status_code == 404, (method, response.text)
    foreign = {"server_json": {"name": r.name, "version": "3.0.0", "description": "b's"}}
    assert api(accounts_stack, "POST", f"{REGISTRY}/{r.own}/versions", r.b, json=foreign).status_code == 400
    # Nothing moved.
    server = ok(accounts_stack, r.a, "GET", f"{REGISTRY}/{r.name}")
    assert server["description"] == f"{r.name} only" and server["tags"] == {"team": "a"}
    versions = ok(accounts_stack, r.a, "GET", f"{REGISTRY}/{r.name}/versions")["mcp_server_versions"]
    assert [v["version"] for v in versions] == ["1.0.0"]
    endpoint = ok(accounts_stack, r.a, "GET", f"{REGISTRY}/{r.name}/endpoints/{r.endpoint_id}")
    assert endpoint["url"] == "http://10.0.0.7/mcp"


def test_the_searches_list_only_what_a_colleague_may_read(accounts_stack: MlflowStack, registered: Registered) -> None:
    r = registered
    for prefix in ("/api/3.0/mlflow/mcp-servers", "/ajax-api/3.0/mlflow/mcp-servers"):
        servers = ok(accounts_stack, r.b, "GET", prefix, params={"max_results": 1000})["mcp_servers"]
        assert r.own in {s["name"] for s in servers} and r.name not in {s["name"] for s in servers}
        filtered = ok(accounts_stack, r.b, "GET", prefix, params={"filter_string": f"name = '{r.name}'"})
        assert filtered["mcp_servers"] == [] and not filtered.get("next_page_token")
        endpoints = ok(accounts_stack, r.b, "GET", f"{prefix}/endpoints", params={"server_version": "1.0.0"})
        assert r.endpoint_id not in {e["id"] for e in endpoints["mcp_access_endpoints"]}


def test_a_read_grant_from_the_owner_opens_reads_only(accounts_stack: MlflowStack, registered: Registered) -> None:
    r = registered
    grant = {"username": r.b.username, "resource_type": "mcp_server", "resource_id": r.name, "permission": "READ"}
    ok(accounts_stack, r.a, "POST", "/api/3.0/mlflow/users/permissions/grant", json=grant)
    assert ok(accounts_stack, r.b, "GET", f"{REGISTRY}/{r.name}")["description"] == f"{r.name} only"
    response = api(accounts_stack, "PATCH", f"{REGISTRY}/{r.name}", r.b, json={"description": "b was here"})
    assert response.status_code == 403


def test_registering_and_refusals_leave_audit_lines_with_the_user(
    accounts_stack: MlflowStack, registered: Registered
) -> None:
    r = registered
    lines = [line for line in audit_lines(accounts_stack) if r.name in line["route"] or r.name in str(line["resource"])]
    by_a = {(line["method"], line["route"].removeprefix(REGISTRY)) for line in lines if line["user"] == r.a.username}
    assert {
        ("POST", ""), ("POST", f"/{r.name}/versions"), ("POST", f"/{r.name}/endpoints"),
        ("POST", f"/{r.name}/aliases"), ("POST", f"/{r.name}/tags"),
    } <= by_a  # fmt: skip
    refused = [line for line in lines if line["user"] == r.b.username and line["route"] == f"{REGISTRY}/{r.name}"]
    assert {(line["method"], line["status"]) for line in refused} >= {("PATCH", 403), ("DELETE", 403)}
    assert all("10.0.0.7" not in json.dumps(line) for line in lines)
