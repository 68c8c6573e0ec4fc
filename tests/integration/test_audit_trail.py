"""The audit trail through the real nginx and MLflow: one line per change, the right user, no secrets."""

from __future__ import annotations

import json
import secrets
import time

import pytest
import requests

from localrun.services import MlflowServer
from localrun.stack import MlflowStack
from tests.integration.conftest import SSO_GROUP, SSO_MACHINE
from tests.integration.mlflow_users import ACCOUNTS_GROUP, Accounts
from tests.integration.proxy_log import logged_text

pytestmark = pytest.mark.integration


def audit_lines(stack: MlflowStack) -> list[dict]:
    """What `make local` keeps in .local-run/audit/audit.log (the task: its audit log group)."""
    text = stack.audit_log.read_text() if stack.audit_log.exists() else ""
    return [json.loads(line) for line in text.splitlines()]


def call(
    stack: MlflowStack, method: str, path: str, body: dict, auth: tuple[str, str] | None, **kw: str
) -> requests.Response:
    return requests.request(method, stack.proxy_url + path, json=body, auth=auth, timeout=30, headers=kw or None)


def test_shared_mode_changes_are_logged_once_with_the_checked_user(mlflow_stack: MlflowStack) -> None:
    auth = (mlflow_stack.username, mlflow_stack.password)
    before = len(audit_lines(mlflow_stack))
    name, api_request_id = f"audit-{secrets.token_hex(3)}", f"api-{secrets.token_hex(6)}"
    created = call(
        mlflow_stack, "POST", "/api/2.0/mlflow/experiments/create",
        {"name": name, "tags": [{"key": "k", "value": "tag-value-not-logged"}]}, auth,
        # As API Gateway sends it (stacks/components/http_gateway.py): its access log's requestId.
        **{"X-Authenticated-User": "mallory", "X-Api-Request-Id": api_request_id},
    )  # fmt: skip
    experiment_id = created.json()["experiment_id"]
    call(mlflow_stack, "GET", f"/api/2.0/mlflow/experiments/get?experiment_id={experiment_id}", {}, auth)
    call(mlflow_stack, "POST", "/api/2.0/mlflow/experiments/search", {"max_results": 5}, auth)
    assert call(mlflow_stack, "POST", "/api/2.0/mlflow/experiments/delete", {"experiment_id": experiment_id}, auth).ok
    new = audit_lines(mlflow_stack)[before:]
    assert [(line["route"], line["status"]) for line in new] == [
        ("/api/2.0/mlflow/experiments/create", 200),
        ("/api/2.0/mlflow/experiments/delete", 200),
    ]
    assert {line["user"] for line in new} == {mlflow_stack.username}
    assert new[0]["resource"] == {"name": name}
    assert new[1]["resource"] == {"experiment_id": experiment_id}
    assert all(line["request_id"] for line in new)
    assert new[0]["api_request_id"] == api_request_id
    # nginx's access log line of that request: the user, its request id and the API's.
    (logged,) = [
        line for line in logged_text(mlflow_stack.nginx_log, api_request_id).splitlines() if api_request_id in line
    ]
    assert logged.split(" ")[2] == mlflow_stack.username
    assert logged.endswith(f'{new[0]["request_id"]} "{api_request_id}"')
    text = json.dumps(new)
    assert "tag-value-not-logged" not in text and mlflow_stack.password not in text and "mallory" not in text


@ACCOUNTS_GROUP
def test_accounts_mode_logs_the_user_the_auth_app_checked_and_no_password(accounts_stack: MlflowStack) -> None:
    admin = (accounts_stack.username, accounts_stack.password)
    before = len(audit_lines(accounts_stack))
    username, password = f"audit-{secrets.token_hex(3)}", f"Pw-{secrets.token_hex(12)}"
    assert call(
        accounts_stack, "POST", "/api/2.0/mlflow/users/create", {"username": username, "password": password}, admin
    ).ok
    refused = call(accounts_stack, "POST", "/api/2.0/mlflow/experiments/create", {"name": "x"}, (username, "wrong"))
    assert refused.status_code == 401
    new = audit_lines(accounts_stack)[before:]
    assert [(line["route"], line["user"], line["status"]) for line in new] == [
        ("/api/2.0/mlflow/users/create", accounts_stack.username, 200),
        ("/api/2.0/mlflow/experiments/create", username, 401),
    ]
    assert new[0]["resource"] == {"username": username}
    assert password not in json.dumps(new) and accounts_stack.password not in json.dumps(new)


@ACCOUNTS_GROUP
def test_a_runs_user_is_the_signed_in_one_whatever_the_client_says(
    accounts_stack: MlflowStack, accounts: Accounts
) -> None:
    """docs/security.md: stock MLflow stores the run's user a client sends, another login's name
    included. Here the run is the login's (run_users.py), and the audit line names it too."""
    me = accounts.new_user("claims")
    experiment_id = call(
        accounts_stack, "POST", "/api/2.0/mlflow/experiments/create", {"name": f"e-{me.username}"}, me.auth
    ).json()["experiment_id"]
    before = len(audit_lines(accounts_stack))
    claimed = {"key": "mlflow.user", "value": accounts_stack.username}
    body = {"experiment_id": experiment_id, "userId": accounts_stack.username, "tags": [claimed, claimed]}
    run = call(accounts_stack, "POST", "/api/2.0/mlflow/runs/create", body, me.auth).json()["run"]
    mine = {"key": "mlflow.user", "value": me.username}
    assert run["info"]["user_id"] == me.username
    assert [tag for tag in run["data"]["tags"] if tag["key"] == "mlflow.user"] == [mine]
    (line,) = audit_lines(accounts_stack)[before:]
    assert (line["route"], line["user"], line["status"]) == ("/api/2.0/mlflow/runs/create", me.username, 200)
    # The prompt lab's route creates runs with the user it is sent, too.
    lab = {
        "experiment_id": experiment_id, "user_id": accounts_stack.username,
        "prompt_template": "Say {{ x }}", "prompt_parameters": [{"key": "x", "value": "hi"}],
        "model_route": "chat", "model_input": "Say hi", "model_output": "hi", "mlflow_version": "3.17.2",
    }  # fmt: skip
    lab_run = call(accounts_stack, "POST", "/ajax-api/2.0/mlflow/runs/create-promptlab-run", lab, me.auth)
    assert lab_run.status_code == 200, lab_run.text
    assert lab_run.json()["run"]["info"]["user_id"] == me.username
    # Nor is the tag written afterwards, to anyone's name (the login's own too), or deleted.
    run_id = run["info"]["run_id"]
    for path, change in (
        ("runs/set-tag", {"run_id": run_id, **claimed}),
        ("runs/set-tag", {"run_id": run_id, **mine}),
        ("runs/log-batch", {"run_id": run_id, "tags": [claimed]}),
        ("runs/delete-tag", {"run_id": run_id, "key": "mlflow.user"}),
    ):
        refused = call(accounts_stack, "POST", f"/ajax-api/2.0/mlflow/{path}", change, me.auth)
        assert refused.status_code == 400 and "names who logged the run" in refused.text, (path, refused.text)
    assert call(
        accounts_stack, "POST", "/api/2.0/mlflow/runs/set-tag", {"run_id": run_id, "key": "k", "value": "v"}, me.auth
    ).ok
    stored = call(accounts_stack, "GET", f"/api/2.0/mlflow/runs/get?run_id={run_id}", None, me.auth).json()["run"]
    assert [tag for tag in stored["data"]["tags"] if tag["key"] == "mlflow.user"] == [mine]


def test_shared_mode_keeps_the_users_clients_report(mlflow_stack: MlflowStack) -> None:
    """One login for everyone: the client's user (in Studio `sagemaker-user`) is all a run can say."""
    auth = (mlflow_stack.username, mlflow_stack.password)
    name = f"shared-runs-{secrets.token_hex(3)}"
    experiment_id = call(mlflow_stack, "POST", "/api/2.0/mlflow/experiments/create", {"name": name}, auth).json()[
        "experiment_id"
    ]
    body = {"experiment_id": experiment_id, "user_id": "sagemaker-user"}
    run = call(mlflow_stack, "POST", "/api/2.0/mlflow/runs/create", body, auth).json()["run"]
    assert run["info"]["user_id"] == "sagemaker-user"


@SSO_GROUP
def test_sso_mode_logs_the_tokens_user_never_a_claimed_one(sso_stack: MlflowStack) -> None:
    assert sso_stack.oidc is not None
    token = sso_stack.oidc.client_credentials_token(SSO_MACHINE)
    before = len(audit_lines(sso_stack))
    bearer = {"Authorization": f"Bearer {token}", "X-Authenticated-User": "mallory"}
    name = f"audit-sso-{secrets.token_hex(3)}"
    created = call(sso_stack, "POST", "/api/2.0/mlflow/experiments/create", {"name": name}, None, **bearer)
    assert created.status_code == 200, created.text
    experiment_id = created.json()["experiment_id"]
    deleted = call(
        sso_stack, "POST", "/api/2.0/mlflow/experiments/delete", {"experiment_id": experiment_id}, None, **bearer
    )
    assert deleted.status_code == 200, deleted.text
    forged = call(
        sso_stack, "POST", "/api/2.0/mlflow/experiments/create", {"name": name + "-x"}, None,
        **{"Authorization": f"Bearer {token[:-4]}AAAA", "X-Authenticated-User": SSO_MACHINE},
    )  # fmt: skip
    assert forged.status_code == 401
    new = audit_lines(sso_stack)[before:]
    assert [(line["route"], line["user"], line["status"]) for line in new] == [
        ("/api/2.0/mlflow/experiments/create", SSO_MACHINE, 200),
        ("/api/2.0/mlflow/experiments/delete", SSO_MACHINE, 200),
        ("/api/2.0/mlflow/experiments/create", None, 401),
    ]
    assert new[1]["resource"] == {"experiment_id": experiment_id}
    assert token not in json.dumps(new) and "mallory" not in json.dumps(new)


@SSO_GROUP
def test_sso_mode_writes_the_tokens_user_into_a_new_run(sso_stack: MlflowStack) -> None:
    """The plugin's signed-in user is the run's (run_users.py), whatever user the client sends."""
    assert sso_stack.oidc is not None
    bearer = {"Authorization": f"Bearer {sso_stack.oidc.client_credentials_token(SSO_MACHINE)}"}
    created = call(
        sso_stack,
        "POST",
        "/api/2.0/mlflow/experiments/create",
        {"name": f"runs-{secrets.token_hex(3)}"},
        None,
        **bearer,
    )
    claimed = {"key": "mlflow.user", "value": "olga"}
    body = {"experiment_id": created.json()["experiment_id"], "user_id": "olga", "tags": [claimed]}
    run = call(sso_stack, "POST", "/api/2.0/mlflow/runs/create", body, None, **bearer).json()["run"]
    assert run["info"]["user_id"] == SSO_MACHINE
    assert [tag for tag in run["data"]["tags"] if tag["key"] == "mlflow.user"] == [
        {"key": "mlflow.user", "value": SSO_MACHINE}
    ]
    change = {"run_id": run["info"]["run_id"], **claimed}
    assert call(sso_stack, "POST", "/api/2.0/mlflow/runs/set-tag", change, None, **bearer).status_code == 400


def test_a_task_sends_its_audit_lines_to_the_audit_log_group(mlflow_stack: MlflowStack) -> None:
    """As deployed: MLFLOW_AUDIT_LOG_GROUP set, the server puts the lines in that group (moto's CloudWatch)."""
    logs = mlflow_stack.moto.client("logs")
    group = f"mlflow-audit-{secrets.token_hex(3)}"
    logs.create_log_group(logGroupName=group)
    env = mlflow_stack.server_env() | {
        "MLFLOW_AUDIT_LOG_GROUP": group, "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS": mlflow_stack.moto.endpoint_url,
    }  # fmt: skip
    server = MlflowServer(
        mlflow_stack.root / "mlflow-audit-group", log_dir=mlflow_stack.log_dir, log_name="mlflow-audit-group.log",
        env=env, workers=1, writable=mlflow_stack.data_dirs,
    )  # fmt: skip
    server.start()
    try:
        name = f"audit-cw-{secrets.token_hex(3)}"
        created = requests.post(
            server.url + "/api/2.0/mlflow/experiments/create", json={"name": name},
            headers={"X-Authenticated-User": "alice", "X-Request-Id": "req-cw"}, timeout=30,
        )  # fmt: skip
        assert created.status_code == 200, created.text
        # MLflow deletes it, ignoring the padding (other spellings of `name`, 480 KB); the line
        # still fits one event of the group.
        padding = {"_" * i + "name": "y" * 512 for i in range(1, 600)}
        deleted = requests.post(
            server.url + "/api/2.0/mlflow/experiments/delete",
            json={"experiment_id": created.json()["experiment_id"], **padding},
            headers={"X-Authenticated-User": "alice"}, timeout=30,
        )  # fmt: skip
        assert deleted.status_code == 200, deleted.text
        deadline, messages = time.monotonic() + 30, []
        while time.monotonic() < deadline and len(messages) < 2:
            time.sleep(0.2)
            messages = [
                event["message"]
                for stream in logs.describe_log_streams(logGroupName=group)["logStreams"]
                for event in logs.get_log_events(logGroupName=group, logStreamName=stream["logStreamName"])["events"]
            ]
    finally:
        server.stop()
    line, padded = sorted((json.loads(message) for message in messages), key=lambda line: line["route"])
    assert (line["user"], line["resource"], line["request_id"]) == ("alice", {"name": name}, "req-cw")
    assert padded["route"] == "/api/2.0/mlflow/experiments/delete"
    assert (padded["resource"]["experiment_id"], padded["resource"]["resource_truncated"]) == (
        created.json()["experiment_id"], True,
    )  # fmt: skip
    assert '"mlflow-change"' not in (mlflow_stack.log_dir / "mlflow-audit-group.log").read_text()


@SSO_GROUP
def test_nginx_logs_the_tokens_user_and_never_shows_the_header(sso_stack: MlflowStack) -> None:
    """nginx cannot check a bearer token; its access log names the user MLflow's audit layer saw."""
    assert sso_stack.oidc is not None
    token = sso_stack.oidc.client_credentials_token(SSO_MACHINE)
    marker = f"audit-read-{secrets.token_hex(3)}"
    read = requests.get(
        f"{sso_stack.proxy_url}/api/2.0/mlflow/experiments/get-by-name?experiment_name={marker}",
        headers={"Authorization": f"Bearer {token}"}, timeout=30,
    )  # fmt: skip
    assert read.status_code in (200, 404), read.text
    assert "x-mlflow-user" not in {name.lower() for name in read.headers}
    (line,) = [line for line in logged_text(sso_stack.nginx_log, marker).splitlines() if marker in line]
    assert line.split(" ")[2] == SSO_MACHINE
