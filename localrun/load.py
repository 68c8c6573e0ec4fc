"""A small, bounded load generator: concurrent MLflow log-batch calls.

Shared by the benchmarks so throughput and memory figures come from the same
kind of traffic a training job produces (batches of metrics per step).
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from requests.auth import AuthBase

METRICS_PER_BATCH = 20


def positive(kind: type[int] | type[float]) -> Callable[[str], int | float]:
    """The benchmarks' argparse type for counts and lengths: a number above 0, else a one-line usage error
    (0 artifact megabytes or 0 clients would otherwise end in a ZeroDivisionError after minutes of load)."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if not value > 0:
            whole = "whole " if kind is int else ""
            raise argparse.ArgumentTypeError(f"expected a {whole}number above 0, got {text!r}")
        return value

    return parse


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies: list[float]

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, fraction: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.latencies) * 1000 if self.latencies else float("nan")

    @property
    def p95_ms(self) -> float:
        return self.percentile(0.95) * 1000


# Basic-auth user and password, or a requests auth (a SigV4 signer), or none.
Auth = tuple[str, str] | AuthBase | None


def create_runs(base_url: str, auth: Auth, count: int, headers: dict[str, str] | None = None) -> list[str]:
    """One run per client, so clients never contend on the same rows."""
    session = requests.Session()
    session.auth = auth
    session.headers.update(headers or {})
    name = f"load-{time.time_ns()}"
    response = session.post(f"{base_url}/api/2.0/mlflow/experiments/create", json={"name": name})
    response.raise_for_status()
    experiment_id = response.json()["experiment_id"]
    runs = []
    for _ in range(count):
        response = session.post(f"{base_url}/api/2.0/mlflow/runs/create", json={"experiment_id": experiment_id})
        response.raise_for_status()
        runs.append(response.json()["run"]["info"]["run_id"])
    return runs


def log_batches(
    base_url: str, auth: Auth, run_ids: list[str], seconds: float, headers: dict[str, str] | None = None
) -> LoadResult:
    """Each client logs batches to its own run as fast as it can for `seconds`."""
    latencies: list[list[float]] = [[] for _ in run_ids]
    errors = [0] * len(run_ids)
    start_gate = threading.Barrier(len(run_ids) + 1)
    deadline = [0.0]

    def client(index: int, run_id: str) -> None:
        session = requests.Session()
        session.auth = auth
        session.headers.update(headers or {})
        url = f"{base_url}/api/2.0/mlflow/runs/log-batch"
        step = 0
        start_gate.wait()
        while time.monotonic() < deadline[0]:
            now_ms = int(time.time() * 1000)
            body: dict[str, Any] = {
                "run_id": run_id,
                "metrics": [
                    {"key": f"m{i}", "value": step * 0.5 + i, "timestamp": now_ms, "step": step}
                    for i in range(METRICS_PER_BATCH)
                ],
            }
            began = time.perf_counter()
            try:
                ok = session.post(url, json=body, timeout=30).status_code == 200
            except requests.RequestException:
                ok = False
            if ok:
                latencies[index].append(time.perf_counter() - began)
            else:
                errors[index] += 1
            step += 1

    threads = [threading.Thread(target=client, args=(i, run_id), daemon=True) for i, run_id in enumerate(run_ids)]
    for thread in threads:
        thread.start()
    began = time.monotonic()
    deadline[0] = began + seconds
    start_gate.wait()
    for thread in threads:
        thread.join(timeout=seconds + 60)
    elapsed = time.monotonic() - began
    flat = [value for per_client in latencies for value in per_client]
    return LoadResult(requests=len(flat), errors=sum(errors), seconds=elapsed, latencies=flat)
