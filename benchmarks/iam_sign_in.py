"""What IAM sign-in costs against password sign-in, measured in one run (issue 20).

Log-batch calls (20 metrics each) from 8 concurrent clients against one accounts-mode stack
with IAM sign-in on, in short alternating rounds:

- `password`: an ordinary MLflow user's basic auth through the password server (the
  deployed default check, `validated`);
- `signed`: a role mapped to another ordinary user, each request signed the way MLflow's
  client signs once `configure_mlflow()` set it up: MLflow's own signer built per request,
  keys from the one session `signing_session` hands it; through localrun's stand-in for the
  IAM API, which verifies every signature with botocore before nginx's IAM server;
- `signed, stock`: the same with MLflow's signer as it comes (MLFLOW_TRACKING_AWS_SIGV4 set
  without `configure_mlflow()`): a new boto3 session per request, keys from the environment;
- `caller header`: the same role's caller header sent straight to nginx's IAM server, what
  nginx and MLflow do once API Gateway has verified a request (deployed, the verification is
  API Gateway's, outside the task).

Goal: signed / password >= 0.9. Locally the stand-in's verification (Python, in this process)
and the client's signing share the machine with the server, which a deployment does not.

    python benchmarks/iam_sign_in.py [--clients 8] [--seconds 4] [--rounds 10] [--verbose]
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "lab" / "source_dir"))

import boto3
import requests
import requests_auth_aws_sigv4
import signing_session
from requests.auth import AuthBase

from benchmarks.accounts_and_artifacts import merged, server_cpu_seconds
from localrun.load import Auth, LoadResult, create_runs, log_batches, positive
from localrun.stack import running_stack
from stacks.iam_callers import CALLER_HEADER

ROLE = "arn:aws:iam::123456789012:role/bench-signer"
SESSION = "arn:aws:sts::123456789012:assumed-role/bench-signer/bench"


class SignedLikeMlflow(AuthBase):
    """What MLflow's client does per request with MLFLOW_TRACKING_AWS_SIGV4: builds the signer by its name.

    `stock`: the library's own class, as before `signing_session.reuse()` replaced that name.
    """

    def __init__(self, *, stock: bool) -> None:
        self.stock = stock

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        signer = signing_session.stock_signer() if self.stock else requests_auth_aws_sigv4.AWSSigV4
        return signer("execute-api")(request)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=positive(int), default=8)
    parser.add_argument("--seconds", type=positive(float), default=4)
    parser.add_argument("--rounds", type=positive(int), default=10)
    parser.add_argument("--verbose", action="store_true", help="print every round's throughput")
    args = parser.parse_args()

    users = {name: (f"bench-{name}-{secrets.token_hex(3)}", secrets.token_urlsafe(18)) for name in ("pw", "iam")}
    with (
        tempfile.TemporaryDirectory(prefix="iam-bench-") as tmp,
        running_stack(Path(tmp), auth_mode="accounts", iam_principals={ROLE: users["iam"][0]}) as stack,
    ):
        for username, password in users.values():
            requests.post(
                f"{stack.proxy_url}/api/2.0/mlflow/users/create", json={"username": username, "password": password},
                auth=(stack.username, stack.password), timeout=30,
            ).raise_for_status()  # fmt: skip
        env = stack.signed_client_env(ROLE, "bench")
        os.environ.update({name: env[name] for name in env if name.startswith("AWS_")})
        if not signing_session.reuse(boto3.session.Session(), os.environ["AWS_DEFAULT_REGION"]):
            sys.exit("signing_session is not installed for this MLflow: see the warning above")
        assert stack.iam_url is not None and stack.iam_proxy_url is not None
        targets: dict[str, tuple[str, Auth, dict[str, str]]] = {
            "password": (stack.proxy_url, users["pw"], {}),
            "signed": (stack.iam_url, SignedLikeMlflow(stock=False), {}),
            "signed, stock": (stack.iam_url, SignedLikeMlflow(stock=True), {}),
            "caller header": (stack.iam_proxy_url, None, {CALLER_HEADER: SESSION}),
        }
        runs = {name: create_runs(url, auth, args.clients, headers) for name, (url, auth, headers) in targets.items()}
        for name, (url, auth, headers) in targets.items():  # warm up connections and caches
            log_batches(url, auth, runs[name], 2, headers)
        results: dict[str, list[LoadResult]] = {name: [] for name in targets}
        # CPU seconds: the stack's MLflow, nginx and PostgreSQL; this process (the clients and the stand-in).
        server_cpu = dict.fromkeys(targets, 0.0)
        local_cpu = dict.fromkeys(targets, 0.0)
        names = list(targets)
        for number in range(args.rounds):
            for name in names if number % 2 == 0 else names[::-1]:
                url, auth, headers = targets[name]
                server_before, local_before = server_cpu_seconds(stack), time.process_time()
                results[name].append(log_batches(url, auth, runs[name], args.seconds, headers))
                server_cpu[name] += server_cpu_seconds(stack) - server_before
                local_cpu[name] += time.process_time() - local_before
                if args.verbose:
                    print(f"round {number + 1} {name}: {results[name][-1].throughput:.1f} req/s", flush=True)
    total = {name: merged(parts) for name, parts in results.items()}
    print(f"\nMLflow log-batch, accounts mode ({args.clients} clients, {args.rounds} x {args.seconds:.0f} s each)")
    print(
        f"{'variant':<15}{'requests':>10}{'errors':>8}{'req/s':>10}{'p50 ms':>10}{'p95 ms':>10}"
        f"{'vs password':>13}{'rounds':>13}{'server CPU ms':>15}{'client CPU ms':>15}"
    )
    for name, result in total.items():
        per_round = [a.throughput / b.throughput for a, b in zip(results[name], results["password"])]
        print(
            f"{name:<15}{result.requests:>10}{result.errors:>8}{result.throughput:>10.1f}{result.p50_ms:>10.1f}"
            f"{result.p95_ms:>10.1f}{result.throughput / total['password'].throughput:>13.3f}"
            f"{min(per_round):>7.2f}-{max(per_round):.2f}"
            f"{1000 * server_cpu[name] / result.requests:>15.1f}{1000 * local_cpu[name] / result.requests:>15.1f}"
        )
    print("rounds: the lowest and highest ratio of a single round; goal: signed/password >= 0.9")
    print("CPU ms per request: server = MLflow, nginx, PostgreSQL; client = this process (clients, signing, stand-in)")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
