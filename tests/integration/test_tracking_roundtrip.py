"""The real MLflow client logs through the proxy and reads everything back,
also after MLflow and nginx restart (state lives in PostgreSQL and S3 only)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from localrun.services import MotoServer
from localrun.stack import MlflowStack
from tests.integration.proxy_log import ProxyLog, Traffic

pytestmark = pytest.mark.integration

ARTIFACT_BYTES = 50 * 1024 * 1024
METRIC_POINTS = 1000
MODEL_NAME = "proxy-roundtrip-model"


@dataclass
class Logged:
    experiment_id: str
    run_id: str
    params: dict[str, str]
    tags: dict[str, str]
    metric: list[tuple[int, float]]
    artifact_sha256: str
    model_version: str
    probe: np.ndarray
    predictions: np.ndarray
    proxy_traffic: Traffic


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@pytest.fixture(scope="module")
def logged(client_env: dict[str, str], mlflow_stack: MlflowStack, tmp_path_factory: pytest.TempPathFactory) -> Logged:
    """Log one run of every kind of data the notebook produces."""
    client = MlflowClient()
    experiment_id = client.create_experiment("proxy-roundtrip")
    params = {"learning_rate": "0.01", "penalty": "l2", "note": "a:b@c/d%e"}
    tags = {"team": "ml-platform", "stage": "integration"}
    rng = np.random.default_rng(7)
    metric = [(step, float(value)) for step, value in enumerate(rng.random(METRIC_POINTS))]

    with mlflow.start_run(experiment_id=experiment_id) as run:
        run_id = run.info.run_id
        client.log_batch(
            run_id,
            metrics=[Metric("loss", value, 1_700_000_000_000 + step, step) for step, value in metric],  # fmt: skip
            params=[Param(key, value) for key, value in params.items()],
            tags=[RunTag(key, value) for key, value in tags.items()],
        )
        blob = tmp_path_factory.mktemp("upload") / "blob.bin"
        blob.write_bytes(os.urandom(ARTIFACT_BYTES))
        proxy_log = ProxyLog(mlflow_stack.nginx_log)
        mlflow.log_artifact(str(blob), artifact_path="data")
        proxy_traffic = proxy_log.since()

        features, labels = make_classification(n_samples=200, n_features=6, random_state=0)
        model = LogisticRegression(max_iter=200).fit(features, labels)
        info = mlflow.sklearn.log_model(
            model, name="model", registered_model_name=MODEL_NAME,
            # Explicit requirements: skip the slow inference subprocess.
            pip_requirements=["scikit-learn"],
        )  # fmt: skip

    return Logged(
        experiment_id=experiment_id,
        run_id=run_id,
        params=params,
        tags=tags,
        metric=metric,
        artifact_sha256=sha256(blob),
        model_version=str(info.registered_model_version),
        probe=features[:10],
        predictions=model.predict_proba(features[:10]),
        proxy_traffic=proxy_traffic,
    )


def assert_everything_reads_back(logged: Logged, download_dir: Path) -> None:
    client = MlflowClient()
    assert client.get_experiment(logged.experiment_id).name == "proxy-roundtrip"

    run = client.get_run(logged.run_id)
    assert run.data.params == logged.params
    assert {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")} == logged.tags

    history = client.get_metric_history(logged.run_id, "loss")
    assert sorted((m.step, m.value) for m in history) == logged.metric

    path = mlflow.artifacts.download_artifacts(
        run_id=logged.run_id, artifact_path="data/blob.bin", dst_path=str(download_dir)
    )
    assert Path(path).stat().st_size == ARTIFACT_BYTES
    assert sha256(Path(path)) == logged.artifact_sha256

    version = client.get_model_version(MODEL_NAME, logged.model_version)
    assert version.run_id == logged.run_id
    loaded = mlflow.sklearn.load_model(f"models:/{MODEL_NAME}/{logged.model_version}", dst_path=str(download_dir))
    np.testing.assert_array_equal(loaded.predict_proba(logged.probe), logged.predictions)


def test_everything_logged_through_the_proxy_reads_back(logged: Logged, tmp_path: Path) -> None:
    assert_everything_reads_back(logged, tmp_path)


def test_artifacts_went_straight_to_s3(logged: Logged, mlflow_stack: MlflowStack, moto_server: MotoServer) -> None:
    """The 50 MB file is in the bucket under MLflow's prefix; nginx (10 MB limit) carried
    only the calls that set up the presigned upload, not the file."""
    s3 = moto_server.client("s3")
    listing = s3.list_objects_v2(Bucket=mlflow_stack.bucket, Prefix="mlflow-artifacts/")
    sizes = {item["Key"]: item["Size"] for item in listing.get("Contents", [])}
    key = f"mlflow-artifacts/{logged.experiment_id}/{logged.run_id}/artifacts/data/blob.bin"
    assert sizes.get(key) == ARTIFACT_BYTES
    assert logged.proxy_traffic.bytes_in < 1024 * 1024, logged.proxy_traffic.requests
    assert any("/mlflow-artifacts/mpu/create/" in r for r in logged.proxy_traffic.requests)


def test_everything_survives_restarts(logged: Logged, mlflow_stack: MlflowStack, tmp_path: Path) -> None:
    mlflow_stack.restart_mlflow()
    mlflow_stack.restart_nginx()
    assert_everything_reads_back(logged, tmp_path)
