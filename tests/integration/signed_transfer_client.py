"""A client process with IAM sign-in's artifact settings: logs files of several sizes and reads them back.

Run by test_signed_client_artifacts.py in a minimal environment (no AWS
variables). Each file is logged as a run artifact and inside one model, then
both are downloaded again.

    python signed_transfer_client.py <download dir> <file>...   -> prints one JSON line
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import mlflow
import mlflow.pyfunc
from transfer_client import Blob, sha256


def main() -> None:
    downloads, files = Path(sys.argv[1]), [Path(name) for name in sys.argv[2:]]
    mlflow.set_experiment(f"signed-transfers-{time.time_ns()}")
    with mlflow.start_run() as run:
        mlflow.log_param("sizes", ",".join(str(path.stat().st_size) for path in files))
        mlflow.log_metrics({"accuracy": 0.93, "loss": 0.07}, step=1)
        for path in files:
            mlflow.log_artifact(str(path), artifact_path="data")
        info = mlflow.pyfunc.log_model(
            name="model", python_model=Blob(), artifacts={p.stem: str(p) for p in files}, pip_requirements=["mlflow"]
        )  # fmt: skip
    artifacts = Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="data",
                                                         dst_path=str(downloads / "artifacts")))  # fmt: skip
    model = Path(mlflow.artifacts.download_artifacts(artifact_uri=info.model_uri, dst_path=str(downloads / "model")))
    print(json.dumps({
        "run_id": run.info.run_id,
        "artifacts": {path.name: sha256(path) for path in sorted(artifacts.iterdir())},
        "model": {path.name: sha256(path) for path in sorted(model.rglob("*")) if path.is_file()},
    }))  # fmt: skip


if __name__ == "__main__":
    main()
