"""Train a classifier and log it to MLflow: SageMaker training job script or local run.

As a training job, SageMaker passes hyperparameters as `--name value`
arguments and describes the job in TRAINING_JOB_NAME / TRAINING_JOB_ARN and
SM_* variables; nothing points at MLflow yet, so the script configures it from
the deployed stacks (`mlflow_setup`). Run locally, it uses MLFLOW_TRACKING_URI
if it is already set (e.g. by the notebook) and the same AWS lookup otherwise.

    python train.py --c 0.5 --max-iter 300
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
import mlflow_setup
from mlflow.models import infer_signature
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

# What the serving container installs: the versions that trained the model. MLflow would
# infer the same list by loading the model again in a second Python process, which costs
# seconds of CPU on every run.
MODEL_PACKAGES = ("scikit-learn", "numpy", "pandas", "scipy", "cloudpickle")

DEFAULT_EXPERIMENT = "sagemaker-studio-demo"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Hyperparameters plus where MLflow lives; defaults match the stacks."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--c", type=float, default=1.0, help="inverse regularisation strength")
    p.add_argument("--max-iter", type=int, default=200)
    p.add_argument("--test-size", type=float, default=0.25)
    p.add_argument("--random-state", type=int, default=42)
    p.add_argument("--experiment-name", default=DEFAULT_EXPERIMENT)
    p.add_argument("--run-name", default=None)
    p.add_argument("--region", default=None)
    p.add_argument("--stack-name", default=mlflow_setup.GATEWAY_STACK_NAME)
    # Default: the secret the job's role is tagged with (see mlflow_setup).
    p.add_argument("--secret-name", default=None)
    p.add_argument("--tracking-url-parameter", default=None)
    p.add_argument("--model-dir", default=os.environ.get("SM_MODEL_DIR"))
    # SageMaker may add arguments of its own; ignore what we do not know.
    args, _unknown = p.parse_known_args(argv)
    return args


def training_job_tags(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """Identify the SageMaker training job that produced the run, if there is one."""
    tags: dict[str, str] = {}
    name = environ.get("TRAINING_JOB_NAME")
    if not name and environ.get("SM_TRAINING_ENV"):
        try:
            name = json.loads(environ["SM_TRAINING_ENV"]).get("job_name")
        except ValueError:
            name = None
    if name:
        tags["sagemaker.training_job_name"] = name
        tags["mlflow.source.type"] = "JOB"
    if environ.get("TRAINING_JOB_ARN"):
        tags["sagemaker.training_job_arn"] = environ["TRAINING_JOB_ARN"]
    if name and environ.get("SM_CURRENT_INSTANCE_TYPE"):
        tags["sagemaker.instance_type"] = environ["SM_CURRENT_INSTANCE_TYPE"]
    return tags


def load_data(test_size: float, random_state: int) -> list[Any]:
    """The breast cancer data set that ships with scikit-learn (no download).

    Train and test features, then train and test labels (pandas frames and series).
    """
    x, y = load_breast_cancer(return_X_y=True, as_frame=True)
    return train_test_split(x, y, test_size=test_size, random_state=random_state, stratify=y)


def train(args: argparse.Namespace) -> str:
    """Fit, evaluate, log; returns the MLflow run id."""
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        conn = mlflow_setup.configure_mlflow(
            args.region,
            stack_name=args.stack_name,
            tracking_url_parameter=args.tracking_url_parameter,
            secret_name=args.secret_name,
        )
        print(conn)
    mlflow.set_experiment(args.experiment_name)
    x_train, x_test, y_train, y_test = load_data(args.test_size, args.random_state)
    params = {"C": args.c, "max_iter": args.max_iter, "random_state": args.random_state}
    # Scaled logistic regression: fast, and made only of types MLflow's skops format trusts.
    model = make_pipeline(StandardScaler(), LogisticRegression(**params)).fit(x_train, y_train)
    predicted = model.predict(x_test)
    metrics = {
        "accuracy": accuracy_score(y_test, predicted),
        "f1": f1_score(y_test, predicted),
        "roc_auc": roc_auc_score(y_test, model.predict_proba(x_test)[:, 1]),
    }
    with mlflow.start_run(run_name=args.run_name, tags=training_job_tags()) as run:
        mlflow.log_params({**params, "test_size": args.test_size, "dataset": "breast_cancer"})
        mlflow.log_metrics(metrics)
        mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(x_train, model.predict(x_train)),
            input_example=x_train.head(3),
            pip_requirements=[f"{name}=={importlib.metadata.version(name)}" for name in MODEL_PACKAGES],
        )
    print(f"run {run.info.run_id}: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    if args.model_dir:
        # A training job must leave something in SM_MODEL_DIR; point back at MLflow.
        Path(args.model_dir).mkdir(parents=True, exist_ok=True)
        Path(args.model_dir, "mlflow_run.json").write_text(
            json.dumps({"run_id": run.info.run_id, "tracking_uri": mlflow.get_tracking_uri()})
        )
    return run.info.run_id


def main(argv: list[str] | None = None) -> int:
    train(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
