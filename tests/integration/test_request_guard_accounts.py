"""accounts mode, as a colleague with an ordinary account would try it: odd spellings and odd fields.

User B reads every experiment through a role (`experiment` `*` READ) except E, on which B
holds a DENY. MLflow's auth app looks grants up by the id as sent while the store parses it
as a number, so `01`, `+1`, ` 1`, full-width digits, ... used to reach E past the DENY; the
deployment's request guard (docker/mlflow/request_guard.py) refuses them on every route
that carries an experiment id. B also owns a registered model and may create experiments:
the two fields that could point the server's S3 credentials at E's files (a model
version's `source`, an experiment's `artifact_location`) are refused too.
"""

from __future__ import annotations

import json
import os
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from localrun.stack import MlflowStack
from tests.integration.mlflow_users import ACCOUNTS_GROUP, Account, Accounts, api

pytestmark = [pytest.mark.integration, ACCOUNTS_GROUP]

SECRET = b"E's confidential notes\n"


@dataclass
class Denied:
    b: Account
    experiment_id: str
    experiment_name: str
    run_id: str
    b_model: str
    b_experiment_id: str

    def spellings(self) -> list[str]:
        """E's id as the store would parse it, written every way but the canonical one."""
        e = self.experiment_id
        full_width = "".join(chr(ord(c) - ord("0") + 0xFF10) for c in e)
        return [
            f"0{e}",
            f"00{e}",
            f"+{e}",
            f" {e}",
            f"{e} ",
            f"\t{e}",
            f"{e}\n",
            full_width,
            f"0_{e}",
            f"{e[:1]}_{e[1:]}" if len(e) > 1 else f"0_0{e}",
        ]

    def leaks(self, response: requests.Response) -> bool:
        """Whether a response carries anything of E."""
        return any(marker in response.text for marker in (self.experiment_name, self.run_id, SECRET.decode().strip()))


def deny_to(accounts: Accounts, stack: MlflowStack, b: Account) -> Denied:
    """E (the admin's, with an artifact) that `b` may not read; `b` reads the rest, owns a model and an experiment."""
    admin = accounts.admin
    name = f"confidential-{b.username}"
    experiment_id = api(stack, "POST", "/api/2.0/mlflow/experiments/create", admin, json={"name": name}).json()[
        "experiment_id"
    ]
    run = api(stack, "POST", "/api/2.0/mlflow/runs/create", admin, json={"experiment_id": experiment_id})
    run_id = run.json()["run"]["info"]["run_id"]
    upload = api(
        stack, "PUT", f"/api/2.0/mlflow-artifacts/artifacts/{experiment_id}/{run_id}/artifacts/notes.txt",
        admin, data=SECRET,
    )  # fmt: skip
    assert upload.status_code == 200, upload.text
    with accounts.client() as client:
        role = client.create_role("default", f"readers-{b.username}")
        client.add_role_permission(role.id, "experiment", "*", "READ")
        client.assign_role(b.username, role.id)
        client.grant_user_permission(b.username, "experiment", experiment_id, "DENY")
    b_model = f"b-model-{b.username}"
    assert api(stack, "POST", "/api/2.0/mlflow/registered-models/create", b, json={"name": b_model}).ok
    b_experiment = api(stack, "POST", "/api/2.0/mlflow/experiments/create", b, json={"name": f"b-{b.username}"})
    return Denied(b, experiment_id, name, run_id, b_model, b_experiment.json()["experiment_id"])


@pytest.fixture(scope="module")
def denied(accounts: Accounts, accounts_stack: MlflowStack) -> Denied:
    return deny_to(accounts, accounts_stack, accounts.new_user("colleague"))


Probe = Callable[[MlflowStack, Denied, str], requests.Response]


def _graphql(stack: MlflowStack, d: Denied, query: str, variables: dict | None = None) -> requests.Response:
    return api(stack, "POST", "/graphql", d.b, json={"query": query, "variables": variables or {}})


# Every route and parameter that carries an experiment id, each as B.
PROBES: dict[str, Probe] = {
    "experiments/get (query)": lambda s, d, e: api(
        s, "GET", "/api/2.0/mlflow/experiments/get", d.b, params={"experiment_id": e}
    ),
    "experiments/get (ajax)": lambda s, d, e: api(
        s, "GET", "/ajax-api/2.0/mlflow/experiments/get", d.b, params={"experiment_id": e}
    ),
    "runs/search (JSON)": lambda s, d, e: api(
        s, "POST", "/api/2.0/mlflow/runs/search", d.b, json={"experiment_ids": [e]}
    ),
    "runs/search (camelCase)": lambda s, d, e: api(
        s, "POST", "/api/2.0/mlflow/runs/search", d.b, json={"experimentIds": [e]}
    ),
    "runs/search (one id among allowed ones)": lambda s, d, e: api(
        s, "POST", "/api/2.0/mlflow/runs/search", d.b, json={"experiment_ids": [d.b_experiment_id, e]}
    ),
    "runs/search (JSON encoded twice)": lambda s, d, e: api(
        s,
        "POST",
        "/api/2.0/mlflow/runs/search",
        d.b,
        data=json.dumps(json.dumps({"experiment_ids": [e]})),
        headers={"Content-Type": "application/json"},
    ),
    "runs/search (duplicate key)": lambda s, d, e: api(
        s,
        "POST",
        "/api/2.0/mlflow/runs/search",
        d.b,
        data='{"experiment_ids": [%s], "experiment_ids": [%s]}' % (json.dumps(e), json.dumps(d.b_experiment_id)),
        headers={"Content-Type": "application/json"},
    ),
    "runs/search (UTF-16 body)": lambda s, d, e: api(
        s,
        "POST",
        "/api/2.0/mlflow/runs/search",
        d.b,
        data=json.dumps({"experiment_ids": [e]}).encode("utf-16"),
        headers={"Content-Type": "application/json"},
    ),
    "runs/create": lambda s, d, e: api(s, "POST", "/api/2.0/mlflow/runs/create", d.b, json={"experiment_id": e}),
    "experiments/update": lambda s, d, e: api(
        s, "POST", "/api/2.0/mlflow/experiments/update", d.b, json={"experiment_id": e, "new_name": "taken-over"}
    ),
    "logged-models/search": lambda s, d, e: api(
        s, "POST", "/api/2.0/mlflow/logged-models/search", d.b, json={"experiment_ids": [e]}
    ),
    "traces search (v3)": lambda s, d, e: api(
        s,
        "POST",
        "/api/3.0/mlflow/traces/search",
        d.b,
        json={"locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": e}}]},
    ),
    "GraphQL run search (argument)": lambda s, d, e: _graphql(
        s, d, "mutation { mlflowSearchRuns(input: {experimentIds: [%s]}) { runs { info { runId } } } }" % json.dumps(e)
    ),
    "GraphQL run search (variables)": lambda s, d, e: _graphql(
        s,
        d,
        "mutation q($ids: [String]) { mlflowSearchRuns(input: {experimentIds: $ids}) { runs { info { runId } } } }",
        {"ids": [e]},
    ),
    "GraphQL experiment (argument)": lambda s, d, e: _graphql(
        s, d, "query { mlflowGetExperiment(input: {experimentId: %s}) { experiment { name } } }" % json.dumps(e)
    ),
    "artifact download": lambda s, d, e: api(
        s, "GET", f"/api/2.0/mlflow-artifacts/artifacts/{e}/{d.run_id}/artifacts/notes.txt", d.b
    ),
    "artifact listing": lambda s, d, e: api(
        s, "GET", "/api/2.0/mlflow-artifacts/artifacts", d.b, params={"path": f"{e}/{d.run_id}/artifacts"}
    ),
    "artifact upload": lambda s, d, e: api(
        s, "PUT", f"/api/2.0/mlflow-artifacts/artifacts/{e}/{d.run_id}/artifacts/planted.txt", d.b, data=b"x"
    ),
    "OTLP trace export (header)": lambda s, d, e: api(
        s,
        "POST",
        "/v1/traces",
        d.b,
        data=b"",
        headers={"Content-Type": "application/x-protobuf", "x-mlflow-experiment-id": e.encode()},
    ),
}


def test_the_canonical_id_is_denied_on_every_route(accounts_stack: MlflowStack, denied: Denied) -> None:
    """The DENY holds for E's own id: the baseline the odd spellings are compared with."""
    for route, probe in PROBES.items():
        response = probe(accounts_stack, denied, denied.experiment_id)
        assert not denied.leaks(response), (route, response.status_code, response.text[:300])
        if route not in ("OTLP trace export (header)",) and not route.startswith("GraphQL"):
            assert response.status_code in (200, 403), (route, response.status_code, response.text[:300])


@pytest.mark.parametrize("route", PROBES)
def test_other_spellings_of_a_denied_experiment_are_refused(
    route: str, accounts_stack: MlflowStack, denied: Denied
) -> None:
    probe = PROBES[route]
    # HTTP drops white space around a header value (requests refuses to send it at all).
    spellings = [s for s in denied.spellings() if s == s.strip()] if "header" in route else denied.spellings()
    for spelling in spellings:
        response = probe(accounts_stack, denied, spelling)
        assert response.status_code == 400, (route, spelling, response.status_code, response.text[:300])
        assert "experiment ids are written as the server returns them" in response.text, (route, spelling)
        assert not denied.leaks(response), (route, spelling)


def test_the_colleague_still_reads_what_the_role_grants(accounts_stack: MlflowStack, denied: Denied) -> None:
    """The guard refuses spellings, not access: B's own experiment and the role's reads work."""
    mine = api(
        accounts_stack,
        "GET",
        "/api/2.0/mlflow/experiments/get",
        denied.b,
        params={"experiment_id": denied.b_experiment_id},
    )
    assert mine.status_code == 200, mine.text
    default = api(accounts_stack, "POST", "/api/2.0/mlflow/runs/search", denied.b, json={"experiment_ids": ["0"]})
    assert default.status_code == 200, default.text


def _create_version(stack: MlflowStack, d: Denied, source: str) -> requests.Response:
    return api(stack, "POST", "/api/2.0/mlflow/model-versions/create", d.b, json={"name": d.b_model, "source": source})


def test_a_model_version_cannot_point_at_another_experiments_files(accounts_stack: MlflowStack, denied: Denied) -> None:
    """B's own registered model, with a source inside E: nothing is created, nothing can be read."""
    e, run = denied.experiment_id, denied.run_id
    bucket_path = f"{accounts_stack.artifacts_destination}/{e}/{run}/artifacts"
    foreign = {
        # Other stores and schemes than this server's own: refused outright (400).
        bucket_path: 400,
        bucket_path.replace("s3://", "S3://"): 400,
        f"s3://{accounts_stack.bucket}/": 400,
        f"file:///{accounts_stack.root}": 400,
        "/etc": 400,
        f"mlflow-artifacts://{accounts_stack.bucket}/{e}/{run}/artifacts": 400,
        f"mlflow-artifacts:/{denied.b_experiment_id}/../{e}/{run}/artifacts": 400,
        f"mlflow-artifacts:/{denied.b_experiment_id}/%2e%2e/{e}/{run}/artifacts": 400,
        f"mlflow-artifacts:/0{e}/{run}/artifacts": 400,
        f"runs:/{run}/../../{e}": 400,
        f"runs://{run}/artifacts": 400,
        # This server's own URIs that B may not read: refused as B (403).
        f"mlflow-artifacts:/{e}/{run}/artifacts": 403,
        f"runs:/{run}/": 403,
        f"RUNS:/{run}/": 403,
        "models:/m-0123456789abcdef0123456789abcdef": 403,
    }
    for source, status in foreign.items():
        response = _create_version(accounts_stack, denied, source)
        assert response.status_code == status, (source, response.status_code, response.text[:300])
    versions = api(
        accounts_stack,
        "GET",
        "/api/2.0/mlflow/model-versions/search",
        denied.b,
        params={"filter": f"name='{denied.b_model}'"},
    )
    assert versions.json().get("model_versions", []) == [], versions.text


def test_a_model_version_from_ones_own_run_is_created(accounts_stack: MlflowStack, denied: Denied) -> None:
    run = api(
        accounts_stack, "POST", "/api/2.0/mlflow/runs/create", denied.b, json={"experiment_id": denied.b_experiment_id}
    )
    run_id = run.json()["run"]["info"]["run_id"]
    for source in (f"runs:/{run_id}/model", f"mlflow-artifacts:/{denied.b_experiment_id}/{run_id}/artifacts/model"):
        response = api(
            accounts_stack, "POST", "/api/2.0/mlflow/model-versions/create", denied.b,
            json={"name": denied.b_model, "source": source, "run_id": run_id},
        )  # fmt: skip
        assert response.status_code == 200, (source, response.text)
        assert response.json()["model_version"]["source"] == source


def test_experiments_get_the_location_the_server_assigns(accounts_stack: MlflowStack, denied: Denied) -> None:
    e = denied.experiment_id
    for field in ("artifact_location", "artifactLocation"):
        for location in (
            f"{accounts_stack.artifacts_destination}/{e}",
            f"mlflow-artifacts:/{e}",
            "s3://elsewhere/x",
            "/tmp/x",
        ):
            body = {"name": f"planted-{field}-{len(location)}-{denied.b.username}", field: location}
            response = api(accounts_stack, "POST", "/api/2.0/mlflow/experiments/create", denied.b, json=body)
            assert response.status_code == 400, (field, location, response.text)
            assert "artifact_location is assigned by the server" in response.text
            listed = api(
                accounts_stack,
                "GET",
                "/api/2.0/mlflow/experiments/get-by-name",
                denied.b,
                params={"experiment_name": body["name"]},
            )
            assert listed.status_code == 404, listed.text
    assert (
        api(
            accounts_stack,
            "GET",
            "/api/2.0/mlflow/experiments/get",
            denied.b,
            params={"experiment_id": denied.b_experiment_id},
        ).json()["experiment"]["artifact_location"]
        == f"mlflow-artifacts:/{denied.b_experiment_id}"
    )


@pytest.mark.parametrize("prefix", ["/api/2.0", "/ajax-api/2.0"])
@pytest.mark.parametrize("kind", ["upload", "download"])
def test_single_url_presigned_routes_are_closed(
    prefix: str, kind: str, accounts_stack: MlflowStack, denied: Denied
) -> None:
    """They serve only runs whose artifacts live outside the server-assigned locations, which nothing here makes."""
    run = api(
        accounts_stack, "POST", "/api/2.0/mlflow/runs/create", denied.b, json={"experiment_id": denied.b_experiment_id}
    )
    body = {"run_id": run.json()["run"]["info"]["run_id"], "path": "x.bin"}
    for path in (
        f"{prefix}/mlflow/artifacts/presigned-{kind}-url",
        f"/{prefix}//mlflow/artifacts/presigned-{kind}-url/",
    ):
        response = api(accounts_stack, "POST", path, denied.b, json=body)
        assert response.status_code == 404, (path, response.text)
        assert "presigned single-URL routes are off" in response.text


def _own_trace(
    stack: MlflowStack, d: Denied, tags: dict[str, str] | None = None, metadata: dict[str, str] | None = None
) -> requests.Response:
    """StartTraceV3 of a new trace in B's own experiment."""
    info = {
        "trace_id": f"tr-{secrets.token_hex(16)}", "request_time": "2026-01-01T00:00:00Z", "state": "OK",
        "trace_location": {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": d.b_experiment_id}},
        "tags": tags or {}, "trace_metadata": metadata or {},
    }  # fmt: skip
    return api(stack, "POST", "/api/3.0/mlflow/traces", d.b, json={"trace": {"trace_info": info}})


def _otlp_tagged(trace_id: str, tag: str, value: str) -> bytes:
    """One root span whose attribute sets a trace tag, as MLflow's OTLP exporter writes them."""
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name = bytes.fromhex(trace_id[3:]), os.urandom(8), "planted"
    span.end_time_unix_nano = time.time_ns()
    span.start_time_unix_nano = span.end_time_unix_nano - 1_000_000
    attribute = span.attributes.add()
    attribute.key, attribute.value.string_value = f"mlflow.traceTag.{tag}", value
    return request.SerializeToString()


def test_a_trace_cannot_be_pointed_at_another_experiments_files(
    accounts_stack: MlflowStack, accounts: Accounts, denied: Denied
) -> None:
    """The server reads a trace's data and attachments from the location its tags name, with its own
    credentials: B retagging a trace of B's own would read E's trace data through get-trace-artifact.
    Stock MLflow lets any writer of the trace set those tags (SetTraceTag, EndTrace, OTLP attributes)."""
    s, e, b = accounts_stack, denied.experiment_id, denied.b
    e_trace, attachment = f"tr-{secrets.token_hex(16)}", str(uuid.uuid4())
    e_data = f"{e}/traces/{e_trace}/artifacts"
    for path in ("traces.json", f"attachments/{attachment}"):
        upload = api(s, "PUT", f"/api/2.0/mlflow-artifacts/artifacts/{e_data}/{path}", accounts.admin, data=SECRET)
        assert upload.status_code == 200, upload.text
    started = _own_trace(s, denied)
    assert started.status_code == 200, started.text
    trace_id = started.json()["trace"]["trace_info"]["trace_id"]
    assigned = f"mlflow-artifacts:/{denied.b_experiment_id}/traces/{trace_id}/artifacts"
    archive = {
        "mlflow.trace.spansLocation": "ARCHIVE_REPO",
        "mlflow.trace.archiveLocation": f"mlflow-artifacts:/{e_data}",
    }
    plants = {"mlflow.artifactLocation": f"mlflow-artifacts:/{e_data}", **archive}
    for location in (f"mlflow-artifacts:/{e_data}", f"{s.artifacts_destination}/{e_data}"):
        plants_here = {**plants, "mlflow.artifactLocation": location}
        attempts = {
            f"set tag {tag} ({prefix})": api(
                s, "PATCH", f"{prefix}/mlflow/traces/{trace_id}/tags", b, json={"key": tag, "value": value}
            )
            for prefix in ("/api/3.0", "/api/2.0", "/ajax-api/3.0")
            for tag, value in plants_here.items()
        }
        attempts["end trace v2"] = api(
            s, "PATCH", f"/api/2.0/mlflow/traces/{trace_id}", b,
            json={"timestamp_ms": 1, "status": "OK", "tags": [{"key": k, "value": v} for k, v in plants_here.items()]},
        )  # fmt: skip
        attempts["start trace v3"] = _own_trace(s, denied, archive)
        v2_tags = [{"key": "mlflow.artifactLocation", "value": location}]
        attempts["start trace v2"] = api(
            s, "POST", "/api/2.0/mlflow/traces", b,
            json={"experiment_id": denied.b_experiment_id, "timestamp_ms": 1, "tags": v2_tags},
        )  # fmt: skip
        for tag, value in plants_here.items():
            attempts[f"OTLP attribute {tag}"] = requests.post(
                s.proxy_url + "/v1/traces", data=_otlp_tagged(trace_id, tag, value), auth=b.auth, timeout=30,
                headers={"Content-Type": "application/x-protobuf", "x-mlflow-experiment-id": denied.b_experiment_id},
            )  # fmt: skip
        for name, response in attempts.items():
            assert response.status_code == 400, (name, response.status_code, response.text[:300])
            assert "set by the server only" in response.text, (name, response.text[:300])
    info = api(s, "GET", f"/api/3.0/mlflow/traces/{trace_id}", b)
    tags = info.json()["trace"]["trace_info"]["tags"]
    assert tags["mlflow.artifactLocation"] == assigned
    assert not set(archive) & set(tags), tags
    for version in ("2.0", "3.0"):
        for params in ({"request_id": trace_id}, {"request_id": trace_id, "path": attachment}):
            read = api(s, "GET", f"/ajax-api/{version}/mlflow/get-trace-artifact", b, params=params)
            assert SECRET not in read.content, (version, params)
    # B's traces still take ordinary tags.
    assert api(s, "PATCH", f"/api/3.0/mlflow/traces/{trace_id}/tags", b, json={"key": "team", "value": "b"}).ok


def test_a_delete_cannot_name_one_model_to_the_check_and_another_to_the_handler(
    accounts_stack: MlflowStack, accounts: Accounts, denied: Denied
) -> None:
    """MLflow's basic-auth app reads a DELETE's target from the query string unless the body is declared
    JSON; its handler reads the body whatever it is declared as. B names its own model in the query and
    A's in an undeclared body: stock MLflow 3.17.2 deleted A's tag, alias, version and model this way."""
    s, b = accounts_stack, denied.b
    a = accounts.new_user("model-owner")
    name = f"a-model-{b.username}"
    experiment_id = api(s, "POST", "/api/2.0/mlflow/experiments/create", a, json={"name": name}).json()["experiment_id"]
    run = api(s, "POST", "/api/2.0/mlflow/runs/create", a, json={"experiment_id": experiment_id}).json()["run"]["info"]
    for route, body in [
        ("registered-models/create", {"name": name}),
        ("registered-models/set-tag", {"name": name, "key": "stage", "value": "prod"}),
        ("model-versions/create", {"name": name, "source": f"{run['artifact_uri']}/model", "run_id": run["run_id"]}),
        ("registered-models/alias", {"name": name, "alias": "champion", "version": "1"}),
        ("registered-models/set-tag", {"name": denied.b_model, "key": "stage", "value": "b's"}),
    ]:
        owner = b if body["name"] == denied.b_model else a
        assert api(s, "POST", f"/api/2.0/mlflow/{route}", owner, json=body).ok, route
    attempts = [
        ("registered-models/delete-tag", {"key": "stage"}),
        ("registered-models/alias", {"alias": "champion"}),
        ("model-versions/delete", {"version": "1"}),
        ("registered-models/delete", {}),
    ]
    for route, rest in attempts:
        for headers in ({"Content-Type": "text/plain"}, {"Content-Type": "application/x-www-form-urlencoded"}, {}):
            response = api(
                s, "DELETE", f"/api/2.0/mlflow/{route}", b, params={"name": denied.b_model, **rest},
                data=json.dumps({"name": name, **rest}), headers=headers,
            )  # fmt: skip
            assert response.status_code == 415, (route, headers, response.status_code, response.text)
    model = api(s, "GET", "/api/2.0/mlflow/registered-models/get", a, params={"name": name}).json()["registered_model"]
    assert model["tags"] == [{"key": "stage", "value": "prod"}]
    assert model["aliases"] == [{"alias": "champion", "version": "1"}]
    assert [v["version"] for v in model["latest_versions"]] == ["1"]
    # Declared JSON, the check reads what the handler reads: A's tag is refused, B's own goes.
    forged = api(s, "DELETE", "/api/2.0/mlflow/registered-models/delete-tag", b,
                 params={"name": denied.b_model, "key": "stage"}, json={"name": name, "key": "stage"})  # fmt: skip
    assert forged.status_code == 403, forged.text
    own = api(s, "DELETE", "/api/2.0/mlflow/registered-models/delete-tag", b,
              json={"name": denied.b_model, "key": "stage"})  # fmt: skip
    assert own.status_code == 200, own.text
    mine = api(s, "GET", "/api/2.0/mlflow/registered-models/get", b, params={"name": denied.b_model}).json()
    assert "tags" not in mine["registered_model"]


def test_an_upload_cannot_name_its_own_run_to_the_check_and_another_to_the_handler(
    accounts_stack: MlflowStack, denied: Denied
) -> None:
    """The UI's upload-artifact route: MLflow's check reads `run_id` first, its handler only `run_uuid`.
    B named its own run as `run_id` and E's as `run_uuid`: stock MLflow 3.17.2 wrote B's file into
    E's run (where a model's files could be replaced)."""
    s, b = accounts_stack, denied.b
    own = api(s, "POST", "/api/2.0/mlflow/runs/create", b, json={"experiment_id": denied.b_experiment_id})
    own_run = own.json()["run"]["info"]["run_id"]
    upload = "/ajax-api/2.0/mlflow/upload-artifact"
    octets = {"Content-Type": "application/octet-stream"}
    for params in (
        {"run_id": own_run, "run_uuid": denied.run_id, "path": "planted.txt"},
        {"run_uuid": denied.run_id, "run_id": own_run, "path": "planted.txt"},
    ):
        response = api(s, "POST", upload, b, params=params, data=b"planted by B", headers=octets)
        assert response.status_code == 400, (params, response.status_code, response.text)
    with_admin = api(s, "GET", "/api/2.0/mlflow/artifacts/list", Account(s.username, s.password),
                     params={"run_id": denied.run_id})  # fmt: skip
    assert [f["path"] for f in with_admin.json()["files"]] == ["notes.txt"]
    mine = api(s, "POST", upload, b, params={"run_uuid": own_run, "path": "mine.txt"}, data=b"b's", headers=octets)
    assert mine.status_code == 200, mine.text


def test_a_logged_model_named_in_the_path_is_the_one_changed(accounts_stack: MlflowStack, denied: Denied) -> None:
    """MLflow's check of FinalizeLoggedModel reads the path's model id, the handler the body's. B named its
    own model in the path and one of E's in the body: stock MLflow 3.17.2 changed the status of E's model
    and answered with it (its name, experiment and artifact location)."""
    s, b, admin = accounts_stack, denied.b, Account(accounts_stack.username, accounts_stack.password)

    def logged_model(account: Account, experiment_id: str) -> str:
        body = {"experiment_id": experiment_id, "name": f"lm-{secrets.token_hex(3)}"}
        response = api(s, "POST", "/api/2.0/mlflow/logged-models", account, json=body)
        assert response.status_code == 200, response.text
        return response.json()["model"]["info"]["model_id"]

    theirs, mine = logged_model(admin, denied.experiment_id), logged_model(b, denied.b_experiment_id)
    ready = "LOGGED_MODEL_READY"
    api(s, "PATCH", f"/api/2.0/mlflow/logged-models/{theirs}", admin, json={"model_id": theirs, "status": ready})
    for key in ("model_id", "modelId"):
        forged = {key: theirs, "status": "LOGGED_MODEL_UPLOAD_FAILED"}
        response = api(s, "PATCH", f"/api/2.0/mlflow/logged-models/{mine}", b, json=forged)
        assert response.status_code == 400, (key, response.status_code, response.text)
        assert not denied.leaks(response) and "artifact_uri" not in response.text
    status = api(s, "GET", f"/api/2.0/mlflow/logged-models/{theirs}", admin).json()["model"]["info"]["status"]
    assert status == ready
    own = api(s, "PATCH", f"/api/2.0/mlflow/logged-models/{mine}", b, json={"model_id": mine, "status": ready})
    assert own.status_code == 200 and own.json()["model"]["info"]["status"] == ready, own.text


def test_demo_data_cannot_rewrite_what_a_user_named_like_the_demo(
    accounts_stack: MlflowStack, accounts: Accounts
) -> None:
    """MLflow's demo generator works with the server's rights on the experiment named `MLflow Demo`
    and on prompts named `mlflow-demo.*`, whoever owns them, and MLflow's auth app lets every
    signed-in user start it. On stock MLflow 3.17.2, B (no grant on A's experiment) started it:
    A's run was deleted, A's prompt replaced by one A may not read, 42 traces and the demo's
    note written into A's experiment. Here nobody starts or deletes demo data, the admin included."""
    s, a, b = accounts_stack, accounts.new_user("demo-owner"), accounts.new_user("demo-caller")
    prompt = f"mlflow-demo.{secrets.token_hex(3)}"
    experiment_id = api(s, "POST", "/api/2.0/mlflow/experiments/create", a, json={"name": "MLflow Demo"}).json()[
        "experiment_id"
    ]
    run_id = api(s, "POST", "/api/2.0/mlflow/runs/create", a, json={"experiment_id": experiment_id}).json()["run"][
        "info"
    ]["run_id"]
    assert api(
        s, "POST", "/api/2.0/mlflow/runs/log-parameter", a, json={"run_id": run_id, "key": "demo", "value": "true"}
    ).ok
    prompt_tags = [{"key": "mlflow.prompt.is_prompt", "value": "true"}]
    assert api(s, "POST", "/api/2.0/mlflow/registered-models/create", a, json={"name": prompt, "tags": prompt_tags}).ok
    assert (
        api(s, "GET", "/api/2.0/mlflow/experiments/get", b, params={"experiment_id": experiment_id}).status_code == 403
    )
    for caller in (b, accounts.admin):
        for route in ("generate", "delete"):
            answer = api(s, "POST", f"/ajax-api/3.0/mlflow/demo/{route}", caller, json={})
            assert answer.status_code == 403 and "demo data is off" in answer.text, (
                caller.username,
                route,
                answer.text,
            )
    run = api(s, "GET", "/api/2.0/mlflow/runs/get", a, params={"run_id": run_id}).json()["run"]
    assert run["info"]["lifecycle_stage"] == "active"
    assert api(s, "GET", "/api/2.0/mlflow/registered-models/get", a, params={"name": prompt}).status_code == 200
    traces = api(s, "GET", "/api/2.0/mlflow/traces", a, params={"experiment_ids": experiment_id}).json()
    assert traces.get("traces", []) == []
    tags = api(s, "GET", "/api/2.0/mlflow/experiments/get", a, params={"experiment_id": experiment_id}).json()
    assert not any(tag["key"].startswith("mlflow.demo") for tag in tags["experiment"].get("tags", []))


SCRIPT_URL = "javascript:void(document.title='planted')//git/x"
JSON = {"Content-Type": "application/json"}


def test_a_colleague_cannot_plant_a_link_that_runs_in_the_viewers_session(
    accounts_stack: MlflowStack, accounts: Accounts, denied: Denied
) -> None:
    """MLflow 3.17.2's UI makes a run's `mlflow.source.name` the href of the run page's Source link
    (`target="_top"`). On stock MLflow, B tagged a run of B's own with a `javascript:` source, and an
    admin who opened the run and clicked Source ran B's script in the MLflow page, with the admin's
    session (tried in Chromium). A model version's `run_link` is another such href. Here every route
    that stores a tag or a run link refuses it, and B's run keeps its source."""
    s, b, mlflow_api, ajax = accounts_stack, denied.b, "/api/2.0/mlflow", "/ajax-api/2.0/mlflow"
    run = api(s, "POST", f"{mlflow_api}/runs/create", b, json={
        "experiment_id": denied.b_experiment_id, "tags": [{"key": "mlflow.source.name", "value": "train.py"}],
    }).json()["run"]["info"]["run_id"]  # fmt: skip
    source = {"key": "mlflow.source.name", "value": SCRIPT_URL}
    # "javascript:" spelled with a JSON escape, and split by a tab the browser drops again.
    escaped = json.dumps({"run_id": run, **source}).replace("java", "\\u006aava\\t")
    version = {"name": denied.b_model, "source": f"runs:/{run}/model", "run_id": run, "run_link": SCRIPT_URL}
    attempts = {
        "set-tag": api(s, "POST", f"{mlflow_api}/runs/set-tag", b, json={"run_id": run, **source}),
        "set-tag (ajax)": api(s, "POST", f"{ajax}/runs/set-tag", b, json={"run_id": run, **source}),
        "set-tag (escaped)": api(s, "POST", f"{mlflow_api}/runs/set-tag", b, headers=JSON, data=escaped),
        "log-batch": api(s, "POST", f"{mlflow_api}/runs/log-batch", b, json={"run_id": run, "tags": [source]}),
        "runs/create": api(s, "POST", f"{mlflow_api}/runs/create", b,
                           json={"experiment_id": denied.b_experiment_id, "tags": [source]}),
        "experiment tag": api(s, "POST", f"{mlflow_api}/experiments/set-experiment-tag", b,
                              json={"experiment_id": denied.b_experiment_id, **source}),
        "run_link": api(s, "POST", f"{mlflow_api}/model-versions/create", b, json=version),
        "trace tag (OTLP)": requests.post(
            s.proxy_url + "/v1/traces", data=_otlp_tagged(f"tr-{secrets.token_hex(16)}", "source", SCRIPT_URL),
            auth=b.auth, timeout=30,
            headers={"Content-Type": "application/x-protobuf", "x-mlflow-experiment-id": denied.b_experiment_id},
        ),
        "trace tag (v3)": _own_trace(s, denied, {"source": SCRIPT_URL}),
        "trace metadata (v3)": _own_trace(s, denied, metadata={"mlflow.source.git.repoURL": SCRIPT_URL}),
        "dataset source": api(s, "POST", f"{mlflow_api}/runs/log-inputs", b, json={"run_id": run, "datasets": [{
            "dataset": {"name": "d", "digest": "1", "source_type": "http", "source": json.dumps({"url": SCRIPT_URL})},
        }]}),
    }  # fmt: skip
    for name, response in attempts.items():
        assert response.status_code == 400 and "script URL" in response.text, (name, response.text[:300])
    tags = api(s, "GET", f"{mlflow_api}/runs/get", accounts.admin, params={"run_id": run}).json()["run"]["data"]["tags"]
    assert {"key": "mlflow.source.name", "value": "train.py"} in tags
    runs = api(s, "POST", f"{mlflow_api}/runs/search", accounts.admin, json={
        "experiment_ids": [denied.b_experiment_id], "filter": "tags.`mlflow.source.name` LIKE '%script:%'",
    }).json()  # fmt: skip
    assert runs.get("runs", []) == []
    versions = api(s, "GET", f"{mlflow_api}/model-versions/search", b, params={"filter": f"name='{denied.b_model}'"})
    assert all(not version.get("run_link") for version in versions.json().get("model_versions", []))
    # A git remote, the way MLflow's client records a project's source, is a link as before.
    assert api(s, "POST", f"{mlflow_api}/runs/set-tag", b, json={
        "run_id": run, "key": "mlflow.source.name", "value": "https://github.com/team/repo#train.py",
    }).ok  # fmt: skip
