"""Log a bit of everything a team keeps in MLflow, and read it all back.

The upgrade check and the restore drill log this sample through the real
MLflow client, change something underneath (the server version, or the
whole database and bucket), and compare `inventory()` before and after:
experiments, runs with their metrics (every step), parameters and tags,
a deleted run, run artifacts, a logged model with its files, a registered
model with versions, tags and an alias. Artifacts are compared by SHA-256
of what the server hands back, so a single flipped byte shows.

In accounts mode the sample also has a user, `READER`, granted READ on the
sample's experiment and registered model and nothing on a second, private
experiment; `access()` asks the server what that user may do.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import requests

EXPERIMENT = "day-two-sample"
PRIVATE_EXPERIMENT = "day-two-private"
REGISTERED_MODEL = "day-two-model"
ALIAS = "champion"
READER = "day-two-reader"


def _write_files(directory: Path, seed: int) -> None:
    (directory / "data").mkdir(parents=True, exist_ok=True)
    (directory / "notes.txt").write_text(f"run {seed}: ünïcode and newlines\n\n", encoding="utf-8")
    # Random bytes: no compression or text handling on the way can go unnoticed.
    (directory / "data" / "weights.bin").write_bytes(os.urandom(96 * 1024))
    (directory / "MLmodel").write_text(f"flavors: {{}}\nrun: {seed}\n", encoding="utf-8")


def log_sample_data(client: Any, workdir: Path) -> None:
    """Log the sample through `client` (an mlflow.MlflowClient pointed at the server)."""
    experiment_id = client.create_experiment(EXPERIMENT, tags={"team": "forecasting"})
    runs = []
    for index in range(2):
        run = client.create_run(experiment_id, run_name=f"train-{index}", tags={"stage": "dev"})
        run_id = run.info.run_id
        client.log_param(run_id, "learning_rate", str(0.1 * (index + 1)))
        client.log_param(run_id, "optimizer", "adam")
        for step in range(4):
            client.log_metric(run_id, "loss", 1.0 / (step + 1 + index), timestamp=1_700_000_000_000 + step, step=step)
        client.log_metric(run_id, "accuracy", 0.9 + index / 100, step=3)
        client.set_tag(run_id, "owner", "data-science")
        files = workdir / f"run-{index}"
        _write_files(files, index)
        client.log_artifacts(run_id, str(files))
        client.log_artifacts(run_id, str(files), artifact_path="model")
        client.set_terminated(run_id)
        runs.append(run_id)
    deleted = client.create_run(experiment_id, run_name="mistake")
    client.delete_run(deleted.info.run_id)

    logged = client.create_logged_model(
        experiment_id, name="forecaster", source_run_id=runs[0], params={"depth": "6"}, tags={"kind": "gbm"}
    )
    model_files = workdir / "logged-model"
    _write_files(model_files, 99)
    client.log_model_artifacts(logged.model_id, str(model_files))
    client.finalize_logged_model(logged.model_id, "READY")

    client.create_registered_model(REGISTERED_MODEL, tags={"domain": "sales"}, description="weekly forecast")
    for run_id in runs:
        client.create_model_version(
            REGISTERED_MODEL, source=f"runs:/{run_id}/model", run_id=run_id, tags={"validated": "yes"}
        )
    client.set_registered_model_alias(REGISTERED_MODEL, ALIAS, "2")


def _hashes(directory: Path) -> dict[str, str]:
    return {
        path.relative_to(directory).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def _download(tracking_uri: str, artifact_uri: str) -> dict[str, str]:
    import mlflow.artifacts

    with tempfile.TemporaryDirectory() as scratch:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=artifact_uri, dst_path=scratch, tracking_uri=tracking_uri
        )
        return _hashes(Path(local))


def inventory(client: Any) -> dict[str, Any]:
    """Everything the sample logged, as the server reports it now (plain data, comparable)."""
    from mlflow.entities import ViewType

    uri = client._tracking_client.tracking_uri
    experiments = {}
    for experiment in client.search_experiments(view_type=ViewType.ALL):
        experiments[experiment.experiment_id] = {
            "name": experiment.name,
            "artifact_location": experiment.artifact_location,
            "lifecycle_stage": experiment.lifecycle_stage,
            "tags": dict(experiment.tags),
            "creation_time": experiment.creation_time,
        }
    ids = sorted(experiments)
    runs = {}
    for run in client.search_runs(ids, run_view_type=ViewType.ALL, max_results=1000):
        info = run.info
        runs[info.run_id] = {
            "experiment_id": info.experiment_id,
            "run_name": info.run_name,
            "status": info.status,
            "lifecycle_stage": info.lifecycle_stage,
            "start_time": info.start_time,
            "end_time": info.end_time,
            "artifact_uri": info.artifact_uri,
            "params": dict(run.data.params),
            "tags": dict(run.data.tags),
            "metrics": dict(run.data.metrics),
            "history": {
                key: sorted((m.step, m.value, m.timestamp) for m in client.get_metric_history(info.run_id, key))
                for key in run.data.metrics
            },
            "artifacts": _download(uri, info.artifact_uri) if info.lifecycle_stage == "active" else None,
        }
    logged_models = {}
    for model in client.search_logged_models(ids):
        logged_models[model.model_id] = {
            "name": model.name,
            "status": str(model.status),
            "source_run_id": model.source_run_id,
            "params": dict(model.params),
            "tags": dict(model.tags),
            "artifact_location": model.artifact_location,
            "artifacts": _download(uri, model.artifact_location),
        }
    registered = {}
    for model in client.search_registered_models():
        versions = {}
        for version in client.search_model_versions(f"name='{model.name}'"):
            versions[version.version] = {
                "source": version.source,
                "run_id": version.run_id,
                "status": version.status,
                "tags": dict(version.tags),
                "aliases": sorted(version.aliases),
                "creation_timestamp": version.creation_timestamp,
            }
        registered[model.name] = {
            "description": model.description,
            "tags": dict(model.tags),
            "aliases": dict(model.aliases) if isinstance(model.aliases, dict) else model.aliases,
            "versions": versions,
        }
    return {"experiments": experiments, "runs": runs, "logged_models": logged_models, "registered_models": registered}


def counts(snapshot: dict[str, Any]) -> str:
    """A one-line summary for people: how much the comparison covered."""
    runs = snapshot["runs"].values()
    files = sum(len(run["artifacts"] or {}) for run in runs)
    files += sum(len(model["artifacts"]) for model in snapshot["logged_models"].values())
    versions = sum(len(model["versions"]) for model in snapshot["registered_models"].values())
    return (
        f"{len(snapshot['experiments'])} experiments, {len(snapshot['runs'])} runs, "
        f"{len(snapshot['logged_models'])} logged models, {len(snapshot['registered_models'])} registered "
        f"models with {versions} versions, {files} artifact files"
    )


def _call(url: str, auth: tuple[str, str], method: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.request(method, f"{url}/api/{path}", auth=auth, timeout=60, **kwargs)


def _experiment_id(url: str, admin: tuple[str, str], name: str) -> str:
    """The experiment's id, or "" when the server does not find it."""
    found = _call(url, admin, "GET", "2.0/mlflow/experiments/get-by-name", params={"experiment_name": name})
    return found.json()["experiment"]["experiment_id"] if found.ok else ""


def log_sample_access(url: str, admin: tuple[str, str], reader_password: str) -> None:
    """accounts mode: `READER` may read the sample's experiment and model; a private experiment is the admin's."""
    experiment_id = _experiment_id(url, admin, EXPERIMENT)
    calls = [
        ("2.0/mlflow/users/create", {"username": READER, "password": reader_password}),
        ("2.0/mlflow/experiments/create", {"name": PRIVATE_EXPERIMENT}),
        # The calls the README shows an admin (AuthServiceClient.grant_user_permission).
        ("3.0/mlflow/users/permissions/grant",
         {"username": READER, "resource_type": "experiment", "resource_id": experiment_id, "permission": "READ"}),
        ("3.0/mlflow/users/permissions/grant",
         {"username": READER, "resource_type": "registered_model", "resource_id": REGISTERED_MODEL,
          "permission": "READ"}),
    ]  # fmt: skip
    for path, body in calls:
        response = _call(url, admin, "POST", path, json=body)
        response.raise_for_status()


def access(url: str, admin: tuple[str, str], reader_password: str) -> dict[str, int]:
    """What `READER` gets from the server (HTTP statuses), and whether the admin still sees it as a user."""
    reader = (READER, reader_password)
    ids = {name: _experiment_id(url, admin, name) for name in (EXPERIMENT, PRIVATE_EXPERIMENT)}
    return {
        "admin reads the reader's account": _call(
            url, admin, "GET", "2.0/mlflow/users/get", params={"username": READER}
        ).status_code,
        "reader reads the granted experiment": _call(
            url, reader, "GET", "2.0/mlflow/experiments/get", params={"experiment_id": ids[EXPERIMENT]}
        ).status_code,
        "reader reads the private experiment": _call(
            url, reader, "GET", "2.0/mlflow/experiments/get", params={"experiment_id": ids[PRIVATE_EXPERIMENT]}
        ).status_code,
        # READ only: refused, so nothing is created.
        "reader starts a run in the granted experiment": _call(
            url, reader, "POST", "2.0/mlflow/runs/create", json={"experiment_id": ids[EXPERIMENT]}
        ).status_code,
        "reader reads the granted registered model": _call(
            url, reader, "GET", "2.0/mlflow/registered-models/get", params={"name": REGISTERED_MODEL}
        ).status_code,
        "reader with a wrong password": _call(
            url,
            (READER, reader_password + "x"),
            "GET",
            "2.0/mlflow/experiments/get",
            params={"experiment_id": ids[EXPERIMENT]},
        ).status_code,  # fmt: skip
    }
