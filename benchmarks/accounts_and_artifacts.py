"""What accounts mode and served artifacts cost, measured in one run.

1. Log-batch throughput (8 concurrent clients, through the proxy, PostgreSQL
   backend) in accounts mode as a ratio of shared mode, for each way of
   checking passwords the entrypoint offers (MLFLOW_AUTH_CREDENTIAL_CACHE):
   `validated` (the default: cached, re-checked against the stored hash on
   every request), `mlflow-ttl` (MLflow's own 60 s cache) and `none`. The
   accounts clients are ordinary users who own their runs. Goal: >= 0.9.
   Also printed: each round's lowest and highest ratio, and the server-side
   CPU time per request (MLflow, nginx and PostgreSQL processes), which
   moves less with the machine's load than throughput does.
   Each patch of MLflow's auth app that `validated` installs is measured
   too: a variant per patch with only that one left out
   (MLFLOW_AUTH_PATCHES_OFF, read by credential_cache.py), compared round by
   round with the variant that has them all. A patch is worth keeping when
   leaving it out costs at least 5% of the throughput.
2. A 200 MB artifact uploaded and downloaded by the MLflow client through
   the proxy (presigned multipart transfers, settings from
   lab/source_dir/mlflow_setup.py), against boto3 uploading and downloading
   the same file to and from the same local S3 endpoint (moto). Goal: >= 0.8.
   Uploads are compared twice: with boto3's defaults, and with boto3 sending
   no optional checksums, as MLflow's presigned parts do (moto completes such
   an upload by checksumming the whole object, which costs it extra time).

All variants run side by side (one stack each, one moto) and are measured in
many short alternating rounds, so drift on a shared machine affects them alike.

    python benchmarks/accounts_and_artifacts.py [--clients 8] [--seconds 4] [--rounds 10]
        [--caches validated,mlflow-ttl,none] [--without cache,runs,users]
        [--artifact-mb 200] [--transfer-rounds 3] [--verbose]
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import requests
from botocore.config import Config

from localrun.load import LoadResult, create_runs, log_batches, positive
from localrun.services import MotoServer
from localrun.stack import MlflowStack, artifact_transfer_settings
from stacks.auth_modes import needs_of

MB = 1024 * 1024


def merged(results: list[LoadResult]) -> LoadResult:
    return LoadResult(
        requests=sum(r.requests for r in results),
        errors=sum(r.errors for r in results),
        seconds=sum(r.seconds for r in results),
        latencies=[value for r in results for value in r.latencies],
    )


ALL_PATCHES = "accounts (validated)"


def start_stack(
    root: Path, moto: MotoServer, mode: str, cache: str | None, workers: int | None, off: str = ""
) -> MlflowStack:
    env = {"MLFLOW_AUTH_CREDENTIAL_CACHE": cache} if cache else {}
    if off:
        env["MLFLOW_AUTH_PATCHES_OFF"] = off
    stack = MlflowStack(root, moto=moto, auth_mode=mode, workers=workers, server_env=env)
    stack.start()
    return stack


def load_user(stack: MlflowStack) -> tuple[str, str]:
    """Shared mode: the one user. Accounts mode: a new, ordinary user."""
    if needs_of(stack.auth_mode).nginx_basic_auth:
        return stack.username, stack.password
    user = (f"bench-{secrets.token_hex(3)}", secrets.token_urlsafe(18))
    response = requests.post(
        stack.proxy_url + "/api/2.0/mlflow/users/create",
        json={"username": user[0], "password": user[1]}, auth=(stack.username, stack.password), timeout=30,
    )  # fmt: skip
    response.raise_for_status()
    return user


def server_cpu_seconds(stack: MlflowStack) -> float:
    """CPU time used so far by the stack's MLflow, nginx and PostgreSQL processes (reaped children too)."""
    import psutil

    total = 0.0
    for process in (stack.mlflow.process, stack.nginx.process, stack.postgres.process if stack.postgres else None):
        for pid in process.process_tree_pids() if process else []:
            try:
                times = psutil.Process(pid).cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system + times.children_user + times.children_system
    return total


def ratios(mine: list[LoadResult], theirs: list[LoadResult]) -> list[float]:
    """Throughput ratio of each round (the variants of a round ran one after the other)."""
    return [a.throughput / b.throughput for a, b in zip(mine, theirs)]


def log_batch_benchmark(stacks: dict[str, MlflowStack], args: argparse.Namespace) -> None:
    targets = {}
    for name, stack in stacks.items():
        auth = load_user(stack)
        targets[name] = (stack.proxy_url, auth, create_runs(stack.proxy_url, auth, args.clients))
    for url, auth, runs in targets.values():  # warm up connections and caches
        log_batches(url, auth, runs, 2)
    results: dict[str, list[LoadResult]] = {name: [] for name in targets}
    cpu: dict[str, float] = {name: 0.0 for name in targets}
    names = list(targets)
    for round_number in range(args.rounds):
        order = names if round_number % 2 == 0 else names[::-1]
        for name in order:
            url, auth, runs = targets[name]
            before = server_cpu_seconds(stacks[name])
            results[name].append(log_batches(url, auth, runs, args.seconds))
            cpu[name] += server_cpu_seconds(stacks[name]) - before
            if args.verbose:
                print(f"round {round_number + 1} {name}: {results[name][-1].throughput:.1f} req/s", flush=True)
    total = {name: merged(parts) for name, parts in results.items()}
    print(f"\nMLflow log-batch through the proxy ({args.clients} clients, {args.rounds} x {args.seconds:.0f} s each)")
    width = max(map(len, total)) + 2
    print(
        f"{'variant':<{width}}{'requests':>10}{'errors':>8}{'req/s':>10}{'p50 ms':>10}{'p95 ms':>10}"
        f"{'vs shared':>11}{'rounds':>13}{'CPU ms/req':>12}{'all patches / this':>20}{'rounds':>13}"
    )
    shared = total["shared"].throughput
    for name, result in total.items():
        per_round = ratios(results[name], results["shared"])
        cpu_ms = 1000 * cpu[name] / result.requests if result.requests else float("nan")
        line = (
            f"{name:<{width}}{result.requests:>10}{result.errors:>8}{result.throughput:>10.1f}"
            f"{result.p50_ms:>10.1f}{result.p95_ms:>10.1f}{result.throughput / shared:>11.3f}"
            f"{min(per_round):>7.2f}-{max(per_round):.2f}{cpu_ms:>12.1f}"
        )
        if name.startswith(ALL_PATCHES + ", without") or name == "accounts (none)":
            gain = ratios(results[ALL_PATCHES], results[name])
            line += f"{total[ALL_PATCHES].throughput / result.throughput:>20.3f}{min(gain):>7.2f}-{max(gain):.2f}"
        print(line)
    print("rounds: the lowest and highest ratio of a single round; CPU ms/req: server side (MLflow, nginx, PostgreSQL)")
    print("all patches / this: what the patches left out in this variant are worth (keep one at >= 1.05)")
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
    # The same client without the optional CRC32 part checksums boto3 adds since 1.36. MLflow's
    # presigned parts carry none, and moto then computes a whole-object CRC64 when the upload
    # completes (about 0.4 s for 200 MB here); real S3 checksums every upload either way.
    s3_like = moto.client("s3", config=Config(request_checksum_calculation="when_required"))
    env = stack.client_env()
    os.environ.update(env)  # the MLflow client: URL, credentials, transfer settings; no AWS keys
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    names = ("s3 up", "s3 up, no checksums", "s3 down", "mlflow up", "mlflow down")
    timings: dict[str, list[float]] = {name: [] for name in names}

    def timed(name: str, transfer: Callable[[], object]) -> object:
        began = time.perf_counter()
        result = transfer()
        timings[name].append(time.perf_counter() - began)
        return result

    for round_number in range(args.transfer_rounds):
        key = f"plain/{round_number}/artifact.bin"
        timed("s3 up", lambda: s3.upload_file(str(source), stack.bucket, key))
        timed("s3 up, no checksums", lambda: s3_like.upload_file(str(source), stack.bucket, key + ".2"))
        target = workdir / f"s3-{round_number}.bin"
        timed("s3 down", lambda: s3.download_file(stack.bucket, key, str(target)))
        target.unlink()
        with mlflow.start_run() as run:
            timed("mlflow up", lambda: mlflow.log_artifact(str(source)))
        path = timed(
            "mlflow down",
            lambda: mlflow.artifacts.download_artifacts(
                run_id=run.info.run_id, artifact_path="artifact.bin", dst_path=str(workdir / f"mlflow-{round_number}")
            ),
        )
        assert Path(path).stat().st_size == size
        Path(path).unlink()
    rate = {name: args.artifact_mb / statistics.median(values) for name, values in timings.items()}
    print(f"\n{args.artifact_mb} MB artifact, median of {args.transfer_rounds} rounds (MB/s)")
    print(f"{'':<34}{'plain S3 (boto3)':>18}{'MLflow presigned':>18}{'ratio':>8}")
    for label, s3_key, mlflow_key in (
        ("upload, boto3 defaults", "s3 up", "mlflow up"),
        ("upload, boto3 without checksums", "s3 up, no checksums", "mlflow up"),
        ("download", "s3 down", "mlflow down"),
    ):
        print(f"{label:<34}{rate[s3_key]:>18.1f}{rate[mlflow_key]:>18.1f}{rate[mlflow_key] / rate[s3_key]:>8.2f}")
    print("goal: MLflow presigned / plain S3 >= 0.8 both ways")
    print("client settings: " + ", ".join(f"{k}={v}" for k, v in artifact_transfer_settings().items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=positive(int), default=8)
    parser.add_argument("--seconds", type=positive(float), default=4)
    parser.add_argument("--rounds", type=positive(int), default=10)
    parser.add_argument("--workers", type=positive(int), default=None, help="MLflow workers (default 2)")
    parser.add_argument("--caches", default="validated,mlflow-ttl,none", help="credential caches to compare")
    parser.add_argument(
        "--without", default="cache,runs,users",
        help="patches of `validated` to measure: one variant each with only that one (or a+b: those) left out",
    )  # fmt: skip
    parser.add_argument("--artifact-mb", type=positive(int), default=200)
    parser.add_argument("--transfer-rounds", type=positive(int), default=3)
    parser.add_argument("--skip-log-batch", action="store_true")
    parser.add_argument("--skip-artifacts", action="store_true")
    parser.add_argument("--verbose", action="store_true", help="print every round's throughput")
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
            if "validated" in args.caches.split(","):
                for patch in filter(None, args.without.split(",")):  # "a+b": a variant without both
                    stack = start_stack(
                        root / f"accounts-without-{patch}", moto, "accounts", "validated", args.workers,
                        off=patch.replace("+", ","),
                    )  # fmt: skip
                    running.callback(stack.stop)
                    stacks[f"{ALL_PATCHES}, without {patch}"] = stack
            log_batch_benchmark(stacks, args)
        if not args.skip_artifacts:
            artifact_benchmark(stacks["shared"], moto, args, root / "transfers")
    print(f"\nmachine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
