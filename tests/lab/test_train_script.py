"""lab/source_dir/train.py logs what the notebook compares, registers and deploys."""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import mlflow
import pytest
from mlflow import MlflowClient

from tests.temporary_files import keep_temporary_files_in


@pytest.fixture(scope="module")
def train() -> ModuleType:
    """lab/source_dir/train.py, imported by the worker running these tests only (scikit-learn takes seconds)."""
    return importlib.import_module("train")


@pytest.fixture
def tracking(tmp_path, monkeypatch) -> str:
    """A throwaway local MLflow store; no AWS lookup happens when the URI is set."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)  # local artifacts land under tmp_path
    keep_temporary_files_in(monkeypatch, tmp_path / "tmp")
    for var in ("TRAINING_JOB_NAME", "TRAINING_JOB_ARN", "SM_TRAINING_ENV", "SM_MODEL_DIR"):
        monkeypatch.delenv(var, raising=False)
    mlflow.set_tracking_uri(uri)
    yield uri
    mlflow.set_tracking_uri(None)


@pytest.mark.integration  # a training run
def test_local_run_logs_params_metrics_and_model(train, tracking, tmp_path):
    run_id = train.train(train.parse_args(["--c", "0.5", "--experiment-name", "unit"]))
    run = MlflowClient().get_run(run_id)
    assert run.data.params["C"] == "0.5" and run.data.params["dataset"] == "breast_cancer"
    assert set(run.data.metrics) == {"accuracy", "f1", "roc_auc"}
    assert 0.9 < run.data.metrics["roc_auc"] <= 1.0
    assert not any(k.startswith("sagemaker.") for k in run.data.tags)

    info = mlflow.models.get_model_info(f"runs:/{run_id}/model")
    assert info.signature.inputs.input_names()[0] == "mean radius"
    assert info.saved_input_example_info is not None
    model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model", dst_path=str(tmp_path))
    example = model.input_example
    assert len(example) == 3 and set(model.predict(example)) <= {0, 1}
    # The serving container installs exactly what trained the model, MLflow included.
    requirements = Path(mlflow.artifacts.download_artifacts(f"runs:/{run_id}/model/requirements.txt"))
    pins = set(requirements.read_text().split())
    for name in (*train.MODEL_PACKAGES, "mlflow"):
        assert f"{name}=={importlib.metadata.version(name)}" in pins, (name, pins)


@pytest.mark.integration  # a training run
def test_runs_as_training_job_script(train, tracking, tmp_path):
    """Hyperparameters arrive as `--name value`, identity in the environment, plus unknown args."""
    job = "mlflow-train-20250101-000000"
    arn = f"arn:aws:sagemaker:eu-west-1:123456789012:training-job/{job}"
    model_dir = tmp_path / "model"
    env = {
        **os.environ,
        "TRAINING_JOB_NAME": job,
        "TRAINING_JOB_ARN": arn,
        "SM_MODEL_DIR": str(model_dir),
        "SM_CURRENT_INSTANCE_TYPE": "ml.m5.large",
    }
    args = ["--c", "2.0", "--max-iter", "300", "--experiment-name", "unit", "--some-toolkit-arg", "1"]
    subprocess.run([sys.executable, train.__file__, *args], env=env, cwd=tmp_path, check=True)

    written = json.loads((model_dir / "mlflow_run.json").read_text())
    run = MlflowClient().get_run(written["run_id"])
    assert run.data.params["C"] == "2.0" and run.data.params["max_iter"] == "300"
    assert run.data.tags["sagemaker.training_job_name"] == job
    assert run.data.tags["sagemaker.training_job_arn"] == arn
    assert run.data.tags["sagemaker.instance_type"] == "ml.m5.large"


def test_job_name_falls_back_to_sm_training_env(train):
    tags = train.training_job_tags({"SM_TRAINING_ENV": json.dumps({"job_name": "mlflow-j"})})
    assert tags == {"sagemaker.training_job_name": "mlflow-j", "mlflow.source.type": "JOB"}
    assert train.training_job_tags({}) == {}
    assert train.training_job_tags({"SM_TRAINING_ENV": "not json"}) == {}


def test_configures_mlflow_from_aws_when_no_uri_is_set(train, monkeypatch):
    """Inside a training job nothing points at MLflow: the script asks the stacks."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    calls = {}

    class Stop(Exception):
        pass

    def fake_configure(region, **kwargs):
        calls.update(region=region, **kwargs)
        raise Stop

    monkeypatch.setattr(train.mlflow_setup, "configure_mlflow", fake_configure)
    args = ["--region", "eu-west-1", "--stack-name", "S", "--secret-name", "X"]
    with pytest.raises(Stop):
        train.train(train.parse_args(args))
    assert calls == {
        "region": "eu-west-1",
        "stack_name": "S",
        "tracking_url_parameter": None,
        "secret_name": "X",
    }
    # Without --secret-name the helper finds the secret through the job's role.
    calls.clear()
    with pytest.raises(Stop):
        train.train(train.parse_args(["--region", "eu-west-1"]))
    assert calls["secret_name"] is None
