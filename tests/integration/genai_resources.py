"""MLflow 3's GenAI resources that hang off an experiment, tried by a colleague with no grant on it.

Issues, label schemas, review queues (and their items) and evaluation datasets (and
their records) each have their own routes and ids; MLflow's auth app and the sso
plugin authorize them from the experiment they belong to. The owner makes one of
each in an experiment of its own; the colleague, who holds nothing there
(default permission NO_PERMISSIONS) and has an experiment of its own, tries every
read, write and search: by id, by the owner's experiment's id or name, through its
own experiment, under other spellings of an id and on the UI's ajax-api. Both
modes' tests (test_genai_permissions_accounts.py, ..._sso.py) share this.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass

import requests

# One REST call as someone: (method, path, json=..., params=...) -> response.
Caller = Callable[..., requests.Response]
# What the owner writes into its resources; no answer to the colleague may carry it.
SECRET = f"owners-secret-{secrets.token_hex(3)}"
# What the owner calls them: a colleague may guess a name, so an answer may echo it.
NAME = f"owners-name-{secrets.token_hex(3)}"
V3 = "/api/3.0/mlflow"


@dataclass
class Owned:
    experiment_id: str
    experiment_name: str
    colleagues_experiment_id: str
    issue_id: str
    schema_id: str
    queue_id: str
    dataset_id: str


def _ok(response: requests.Response) -> dict:
    assert response.status_code == 200, (response.request.method, response.request.url, response.text)
    return response.json()


def make_owned(owner: Caller, colleague: Caller) -> Owned:
    tag = secrets.token_hex(3)
    name = f"genai-owner-{tag}"
    experiment_id = _ok(owner("POST", "/api/2.0/mlflow/experiments/create", json={"name": name}))["experiment_id"]
    mine = _ok(colleague("POST", "/api/2.0/mlflow/experiments/create", json={"name": f"genai-colleague-{tag}"}))
    issue = _ok(
        owner("POST", f"{V3}/issues", json={"name": NAME, "description": SECRET, "experiment_id": experiment_id})
    )
    schema = {
        "experiment_id": experiment_id,
        "name": NAME,
        "type": "FEEDBACK",
        "input": {"text": {}},
        "instruction": SECRET,
    }
    schema_id = _ok(owner("POST", f"{V3}/label-schemas/create", json=schema))["label_schema"]["schema_id"]
    queue = {"experiment_id": experiment_id, "name": NAME, "queue_type": "CUSTOM"}
    queue_id = _ok(owner("POST", f"{V3}/review-queues/create", json=queue))["review_queue"]["queue_id"]
    dataset = _ok(owner("POST", f"{V3}/datasets/create", json={"name": NAME, "experiment_ids": [experiment_id]}))
    dataset_id = dataset["dataset"]["dataset_id"]
    records = json.dumps([{"inputs": {"question": SECRET}}])
    _ok(owner("POST", f"{V3}/datasets/{dataset_id}/records", json={"records": records}))
    return Owned(
        experiment_id, name, mine["experiment_id"], issue["issue"]["issue_id"], schema_id, queue_id, dataset_id
    )


def attempts(o: Owned, colleague_user: str) -> list[tuple[str, str, dict]]:
    """(method, path, requests keyword arguments): everything the colleague must be refused."""
    e, n, mine, d = o.experiment_id, o.experiment_name, o.colleagues_experiment_id, o.dataset_id
    by_name = {"experiment_id": mine, "experiment_name": n}
    reads = [
        ("GET", f"{V3}/issues/{o.issue_id}", {}),
        ("POST", f"{V3}/issues/search", {"json": {"experiment_id": e}}),
        ("POST", f"{V3}/issues/search", {"json": {}}),
        ("POST", f"{V3}/issues/search", {"json": {"experiment_name": n}}),
        ("GET", f"{V3}/label-schemas/get", {"params": {"schema_id": o.schema_id}}),
        ("GET", f"{V3}/label-schemas/get-by-name", {"params": {"experiment_id": e, "name": NAME}}),
        ("GET", f"{V3}/label-schemas/get-by-name", {"params": {"experiment_name": n, "name": NAME}}),
        ("GET", f"{V3}/label-schemas/get-by-name", {"params": {**by_name, "name": NAME}}),
        ("GET", f"{V3}/label-schemas/list", {"params": {"experiment_id": e}}),
        ("GET", f"{V3}/label-schemas/list", {"params": {"experiment_name": n}}),
        ("GET", f"{V3}/label-schemas/list", {"params": {"experiment_id": f"0{e}"}}),
        ("GET", f"{V3}/review-queues/get", {"params": {"queue_id": o.queue_id}}),
        ("GET", f"{V3}/review-queues/get-by-name", {"params": {"experiment_id": e, "name": NAME}}),
        ("GET", f"{V3}/review-queues/get-by-name", {"params": {**by_name, "name": NAME}}),
        ("GET", f"{V3}/review-queues/list", {"params": {"experiment_id": e}}),
        ("GET", f"{V3}/review-queues/list", {"params": {"experiment_name": n}}),
        ("GET", f"{V3}/review-queues/items/list", {"params": {"queue_id": o.queue_id}}),
        ("GET", f"{V3}/datasets/{d}", {}),
        ("GET", f"{V3}/datasets/{d}/records", {}),
        ("GET", f"/ajax-api/3.0/mlflow/datasets/{d}/records", {}),
        ("GET", f"{V3}/datasets/{d.upper()}/records", {}),
        ("GET", f"{V3}/datasets/{d}%20/records", {}),
        ("GET", f"{V3}/datasets/{d}/experiment-ids", {}),
        ("GET", f"{V3}/datasets/search", {}),
        ("GET", f"{V3}/datasets/search", {"params": {"experiment_ids": e}}),
        ("POST", f"{V3}/datasets/search", {"json": {}}),
        ("POST", f"{V3}/datasets/search", {"json": {"filter_string": f"name = '{NAME}'"}}),
    ]
    writes = [
        ("PATCH", f"{V3}/issues/{o.issue_id}", {"json": {"name": "colleague-was-here"}}),
        ("POST", f"{V3}/issues", {"json": {"name": "c", "description": "c", "experiment_id": e}}),
        ("PATCH", f"{V3}/label-schemas/update", {"json": {"schema_id": o.schema_id, "instruction": "c"}}),
        ("DELETE", f"{V3}/label-schemas/delete", {"json": {"schema_id": o.schema_id}}),
        (
            "POST",
            f"{V3}/label-schemas/create",
            {"json": {"experiment_id": e, "name": "c", "type": "FEEDBACK", "input": {"text": {}}}},
        ),  # fmt: skip
        ("POST", f"{V3}/review-queues/update", {"json": {"queue_id": o.queue_id, "name": "c"}}),
        ("POST", f"{V3}/review-queues/items/add", {"json": {"queue_id": o.queue_id, "item_ids": ["tr-1"]}}),
        (
            "POST",
            f"{V3}/review-queues/items/set-status",
            {"json": {"queue_id": o.queue_id, "item_id": "tr-1", "status": "COMPLETED"}},
        ),  # fmt: skip
        ("POST", f"{V3}/review-queues/get-or-create-user", {"json": {"experiment_id": e, "user": colleague_user}}),
        ("POST", f"{V3}/review-queues/get-or-create-user", {"json": {"experiment_name": n, "user": colleague_user}}),
        ("POST", f"{V3}/review-queues/delete", {"json": {"queue_id": o.queue_id}}),
        ("PATCH", f"{V3}/datasets/{d}/tags", {"json": {"tags": json.dumps({"colleague": "1"})}}),
        ("POST", f"{V3}/datasets/{d}/add-experiments", {"json": {"experiment_ids": [mine]}}),
        ("POST", f"{V3}/datasets/{d}/remove-experiments", {"json": {"experiment_ids": [e]}}),
        ("POST", f"{V3}/datasets/{d}/records", {"json": {"records": json.dumps([{"inputs": {"q": "c"}}])}}),
        ("DELETE", f"{V3}/datasets/{d}/records", {"json": {"dataset_record_ids": ["x"]}}),
        ("DELETE", f"{V3}/datasets/{d}", {}),
        ("POST", f"{V3}/datasets/create", {"json": {"name": "c", "experiment_ids": [e]}}),
    ]
    return reads + writes


def assert_colleague_refused(owner: Caller, colleague: Caller, o: Owned, colleague_user: str) -> None:
    """Every attempt is refused and shows nothing; nothing moved.

    403, or 400 for a spelling or a missing id, or 404 where the colleague named its own
    experiment (the owner's name in another parameter changes nothing).
    """
    for method, path, kwargs in attempts(o, colleague_user):
        response = colleague(method, path, **kwargs)
        assert response.status_code in (400, 403, 404), (method, path, kwargs, response.status_code, response.text)
        assert SECRET not in response.text, (method, path, response.text)
    # What the colleague may do in its own experiment still works, and finds nothing of the owner's.
    own = _ok(colleague("POST", f"{V3}/datasets/search", json={"experiment_ids": [o.colleagues_experiment_id]}))
    issues = _ok(colleague("POST", f"{V3}/issues/search", json={"experiment_id": o.colleagues_experiment_id}))
    assert NAME not in json.dumps(own) + json.dumps(issues)
    # Nothing of the owner's changed.
    assert _ok(owner("GET", f"{V3}/issues/{o.issue_id}"))["issue"]["name"] == NAME
    schema = _ok(owner("GET", f"{V3}/label-schemas/get", params={"schema_id": o.schema_id}))["label_schema"]
    assert (schema["name"], schema["instruction"]) == (NAME, SECRET)
    queue = _ok(owner("GET", f"{V3}/review-queues/get", params={"queue_id": o.queue_id}))["review_queue"]
    assert queue["name"] == NAME
    assert _ok(owner("GET", f"{V3}/review-queues/items/list", params={"queue_id": o.queue_id})).get("items", []) == []
    experiments = _ok(owner("GET", f"{V3}/datasets/{o.dataset_id}/experiment-ids"))["experiment_ids"]
    assert experiments == [o.experiment_id]
    records = _ok(owner("GET", f"{V3}/datasets/{o.dataset_id}/records"))
    assert SECRET in json.dumps(records) and "colleague" not in json.dumps(records)
    assert "colleague" not in json.dumps(_ok(owner("GET", f"{V3}/datasets/{o.dataset_id}")))
