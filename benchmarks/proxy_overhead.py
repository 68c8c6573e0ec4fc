"""What the nginx basic-auth proxy costs: MLflow log-batch calls from several
concurrent clients, straight to MLflow and through the proxy, in one run.

Both paths hit the same MLflow server (native, on loopback, PostgreSQL
backend), alternating in rounds so drift affects both alike. Prints
throughput, p50/p95 latency and the proxy/direct throughput ratio
(goal: >= 0.95). Bounded: about 80 s with the defaults.

    python benchmarks/proxy_overhead.py [--clients 8] [--seconds 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from localrun.load import LoadResult, create_runs, log_batches, positive
from localrun.stack import running_stack


def merged(results: list[LoadResult]) -> LoadResult:
    return LoadResult(
        requests=sum(r.requests for r in results),
        errors=sum(r.errors for r in results),
        seconds=sum(r.seconds for r in results),
        latencies=[value for r in results for value in r.latencies],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=positive(int), default=8, help="concurrent clients")
    parser.add_argument("--seconds", type=positive(float), default=8, help="length of one round")
    parser.add_argument("--rounds", type=positive(int), default=3, help="rounds per path")
    parser.add_argument("--workers", type=positive(int), default=None, help="MLflow workers (default 2)")
    parser.add_argument(
        "--poolclass", default=None,
        help="MLFLOW_SQLALCHEMYSTORE_POOLCLASS for the server (default: MLflow's pool, "
        "as deployed; NullPool to compare)",
    )  # fmt: skip
    args = parser.parse_args()
    pool_env = {"MLFLOW_SQLALCHEMYSTORE_POOLCLASS": args.poolclass} if args.poolclass else {}

    with (
        tempfile.TemporaryDirectory(prefix="proxy-bench-") as tmp,
        running_stack(
            Path(tmp), workers=args.workers,
            server_env=pool_env,
        ) as stack,
    ):  # fmt: skip
        auth = (stack.username, stack.password)
        paths = {"direct": (stack.direct_url, None), "proxy": (stack.proxy_url, auth)}
        runs = create_runs(stack.direct_url, None, args.clients)
        for url, credentials in paths.values():  # warm up connections and caches
            log_batches(url, credentials, runs, 2)
        results: dict[str, list[LoadResult]] = {"direct": [], "proxy": []}
        for round_number in range(args.rounds):
            order = ["direct", "proxy"] if round_number % 2 == 0 else ["proxy", "direct"]
            for name in order:
                results[name].append(log_batches(*paths[name], runs, args.seconds))

    total = {name: merged(parts) for name, parts in results.items()}
    print(
        f"MLflow log-batch ({args.clients} clients, {args.rounds} x {args.seconds:.0f} s per path, "
        f"pool {args.poolclass or 'default'}, workers {args.workers or 2})"
    )
    print(f"{'path':<8}{'requests':>10}{'errors':>8}{'req/s':>10}{'p50 ms':>10}{'p95 ms':>10}")
    for name, result in total.items():
        print(
            f"{name:<8}{result.requests:>10}{result.errors:>8}{result.throughput:>10.1f}"
            f"{result.p50_ms:>10.1f}{result.p95_ms:>10.1f}"
        )
    ratio = total["proxy"].throughput / total["direct"].throughput
    print(f"proxy/direct throughput ratio: {ratio:.3f} (goal >= 0.95)")


if __name__ == "__main__":
    main()
