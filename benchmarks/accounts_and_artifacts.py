"""What accounts mode and served artifacts cost, measured in one run.

1. Log-batch throughput (8 concurrent clients, through the proxy, PostgreSQL
   backend) in accounts mode as a ratio of shared mode, for each way of
   checking passwords the entrypoint offers (MLFLOW_AUTH_CREDENTIAL_CACHE):
   `validated` (the default: cached, re-checked against the stored hash on
   every request), `mlflow-ttl` (MLflow's own 60 s cache) and `none`. The
   accounts clients are ordinary users who own their runs. Goal: >= 0.9.
2. A 200 MB artifact uploaded and downloaded by the MLflow client through
   the proxy (presigned multipart transfers, settings from
   lab/source_dir/mlflow_setup.py), against boto3 uploading and downloading
   the same file to and from the same local S3 endpoint (moto). Goal: >= 0.8.

All variants run side by side (one stack each, one moto) and are measured in
alternating rounds, so drift on a shared machine affects them alike.

    python benchmarks/accounts_and_artifacts.py [--clients 8] [--seconds 8] [--rounds 3]
        [--caches validated,mlflow-ttl,none] [--artifact-mb 200] [--transfer-rounds 3]
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests  # noqa: E402

from localrun.load import LoadResult, create_runs, log_batches  # noqa: E402
from localrun.services import MotoServer  # noqa: E402
from localrun.stack import MlflowStack, artifact_transfer_settings  # noqa: E402

MB = 1024 * 1024


def merged(results: list[LoadResult]) -> LoadResult:
    return LoadResult(
        requests=sum(r.requests for r in results),
        errors=sum(r.errors for r in results),
        seconds=sum(r.seconds for r in results),
        latencies=[value for r in results for value in r.latencies],
    )


def start_stack(root: Path, moto: MotoServer, mode: str, cache: str | None, workers: int | None) -> MlflowStack:
    env = {"MLFLOW_AUTH_CREDENTIAL_CACHE": cache} if cache else {}
    stack = MlflowStack(root, moto=moto, auth_mode=mode, workers=workers, server_env=env)
    stack.start()
    return stack


def load_user(stack: MlflowStack) -> tuple[str, str]:
    """Shared mode: the one user. Accounts mode: a new, ordinary user."""
    if stack.auth_mode == "shared":
        return stack.username, stack.password
    user = (f"bench-{secrets.token_hex(3)}", secrets.token_urlsafe(18))
    response = requests.post(
        stack.proxy_url + "/api/2.0/mlflow/users/create",
        json={"username": user[0], "password": user[1]}, auth=(stack.username, stack.password), timeout=30,
    )  # fmt: skip
    response.raise_for_status()
    return user


def log_batch_benchmark(stacks: dict[str, MlflowStack], args: argparse.Namespace) -> None:
    targets = {}
    for name, stack in stacks.items():
        auth = load_user(stack)
        targets[name] = (stack.proxy_url, auth, create_runs(stack.proxy_url, auth, args.clients))
    for url, auth, runs in targets.values():  # warm up connections and caches
        log_batches(url, auth, runs, 2)
    results: dict[str, list[LoadResult]] = {name: [] for name in targets}
    names = list(targets)
    for round_number in range(args.rounds):
        order = names if round_number % 2 == 0 else names[::-1]
        for name in order:
            url, auth, runs = targets[name]
            results[name].append(log_batches(url, auth, runs, args.seconds))
    total = {name: merged(parts) for name, parts in results.items()}
    print(f"\nMLflow log-batch through the proxy ({args.clients} clients, {args.rounds} x {args.seconds:.0f} s each)")
    print(f"{'variant':<22}{'requests':>10}{'errors':>8}{'req/s':>10}{'p50 ms':>10}{'p95 ms':>10}{'vs shared':>11}")
    shared = total["shared"].throughput
    for name, result in total.items():
        print(
            f"{name:<22}{result.requests:>10}{result.errors:>8}{result.throughput:>10.1f}"
            f"{result.p50_ms:>10.1f}{result.p95_ms:>10.1f}{result.throughput / shared:>11.3f}"
        )
    print("goal: accounts/shared >= 0.9")


def artifact_benchmark(stack: MlflowStack, moto: MotoServer, args: argparse.Namespace, workdir: Path) -> None:
    import mlflow

    size = args.artifact_mb * MB
    workdir.mkdir(parents=True, exist_ok=True)
    source = workdir / "artifact.bin"
    with open(source, "wb") as handle:
        for _ in range(args.artifact_mb):
            handle.write(os.urandom(MB))
    s3 = moto.client("s3")
    env = stack.client_env()
    os.environ.update(env)  # the MLflow client: URL, credentials, transfer settings; no AWS keys
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    timings: dict[str, list[float]] = {k: [] for k in ("s3 up", "s3 down", "mlflow up", "mlflow down")}
    for round_number in range(args.transfer_rounds):
        key = f"plain/{round_number}/artifact.bin"
        began = time.perf_counter()
        s3.upload_file(str(source), stack.bucket, key)
        timings["s3 up"].append(time.perf_counter() - began)
        target = workdir / f"s3-{round_number}.bin"
        began = time.perf_counter()
        s3.download_file(stack.bucket, key, str(target))
        timings["s3 down"].append(time.perf_counter() - began)
        target.unlink()
        with mlflow.start_run() as run:
            began = time.perf_counter()
            mlflow.log_artifact(str(source))
            timings["mlflow up"].append(time.perf_counter() - began)
        began = time.perf_counter()
        path = mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id, artifact_path="artifact.bin", dst_path=str(workdir / f"mlflow-{round_number}")
        )
        timings["mlflow down"].append(time.perf_counter() - began)
        assert Path(path).stat().st_size == size
        Path(path).unlink()
    rate = {name: args.artifact_mb / statistics.median(values) for name, values in timings.items()}
    print(f"\n{args.artifact_mb} MB artifact, median of {args.transfer_rounds} rounds (MB/s)")
    print(f"{'':<10}{'plain S3 (boto3)':>18}{'MLflow presigned':>18}{'ratio':>8}")
    for direction, s3_key, mlflow_key in (("upload", "s3 up", "mlflow up"), ("download", "s3 down", "mlflow down")):
        print(f"{direction:<10}{rate[s3_key]:>18.1f}{rate[mlflow_key]:>18.1f}{rate[mlflow_key] / rate[s3_key]:>8.2f}")
    print("goal: MLflow presigned / plain S3 >= 0.8 both ways")
    print("client settings: " + ", ".join(f"{k}={v}" for k, v in artifact_transfer_settings().items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=None, help="MLflow workers (default 2)")
    parser.add_argument("--caches", default="validated,mlflow-ttl,none", help="credential caches to compare")
    parser.add_argument("--artifact-mb", type=int, default=200)
    parser.add_argument("--transfer-rounds", type=int, default=3)
    parser.add_argument("--skip-log-batch", action="store_true")
    parser.add_argument("--skip-artifacts", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="accounts-bench-") as tmp, ExitStack() as running:
        root = Path(tmp)
        moto = MotoServer(log_dir=root / "logs")
        moto.start()
        running.callback(moto.stop)
        stacks = {"shared": start_stack(root / "shared", moto, "shared", None, args.workers)}
        running.callback(stacks["shared"].stop)
        if not args.skip_log_batch:
            for cache in filter(None, args.caches.split(",")):
                stack = start_stack(root / f"accounts-{cache}", moto, "accounts", cache, args.workers)
                running.callback(stack.stop)
                stacks[f"accounts ({cache})"] = stack
            log_batch_benchmark(stacks, args)
        if not args.skip_artifacts:
            artifact_benchmark(stacks["shared"], moto, args, root / "transfers")
    print(f"\nmachine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
