"""A client process with only MLflow's URL and credentials: logs and reads back big things.

Run by the transfer tests with a minimal environment (no AWS variables, a
fresh HOME without ~/.aws), so every byte has to go through MLflow's served
artifacts: small requests through the proxy, large ones through the presigned
S3 URLs the server hands out.

    python transfer_client.py <file> <download dir>   -> prints one JSON line
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

import mlflow
import mlflow.pyfunc


class Blob(mlflow.pyfunc.PythonModel):
    """A model whose only content is the big file (its size is the point)."""

    def predict(self, context, model_input, params=None):  # noqa: ARG002 - PythonModel.predict's signature
        return model_input


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main() -> None:
    big, downloads = Path(sys.argv[1]), Path(sys.argv[2])
    assert not [name for name in os.environ if name.startswith("AWS_")], "AWS variables leaked in"
    timings = {}
    mlflow.set_experiment(f"transfers-{time.time_ns()}")
    with mlflow.start_run() as run:
        began = time.perf_counter()
        mlflow.log_artifact(str(big), artifact_path="data")
        timings["artifact upload"] = time.perf_counter() - began
        began = time.perf_counter()
        info = mlflow.pyfunc.log_model(
            name="model", python_model=Blob(), artifacts={"blob": str(big)}, pip_requirements=["mlflow"]
        )  # fmt: skip
        timings["model upload"] = time.perf_counter() - began
    began = time.perf_counter()
    artifact = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path=f"data/{big.name}", dst_path=str(downloads / "artifact")
    )
    timings["artifact download"] = time.perf_counter() - began
    began = time.perf_counter()
    model_dir = mlflow.artifacts.download_artifacts(artifact_uri=info.model_uri, dst_path=str(downloads / "model"))
    timings["model download"] = time.perf_counter() - began
    blobs = list(Path(model_dir).rglob(big.name))
    print(json.dumps({
        "run_id": run.info.run_id,
        "experiment_id": run.info.experiment_id,
        "model_id": info.model_id,
        "artifact_sha256": sha256(Path(artifact)),
        "model_blob_sha256": [sha256(blob) for blob in blobs],
        "seconds": timings,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
