"""How much memory a task needs for a number of MLflow workers: the measured figures, in one place.

`benchmarks/server_memory.py --workers N` measures the MLflow process tree
(uvicorn in the entrypoint's process, its workers) and nginx while 8 clients log batches and
one browses, with the deployed settings. MEASURED holds the peak resident
memory (RSS sums: the safe side of the task cgroup's charge, which the
benchmark also prints; docs/benchmarks.md has both), MLflow 3.17.2, on a
2-core machine shared with other jobs (figures move by a few percent between
runs).

The model below (a base plus a share per worker) lies above every measurement
(tests/stacks/test_task_sizing.py); the configuration refuses a worker count
whose estimate plus HEADROOM does not fit in task_memory_mib (stacks/config.py).
"""

from __future__ import annotations

import math

# workers -> measured peak RSS of the MLflow process tree (MiB)
MEASURED_MLFLOW_PEAK_MIB = {1: 287, 2: 608, 4: 1171, 8: 2158, 16: 4181}
MEASURED_NGINX_PEAK_MIB = 24

MLFLOW_BASE_MIB = 30
MLFLOW_PER_WORKER_MIB = 290
HEADROOM = 0.30


def peak_mib(workers: int) -> int:
    """Estimated peak memory of the task's processes (MLflow with ``workers`` workers, nginx)."""
    return MLFLOW_BASE_MIB + MLFLOW_PER_WORKER_MIB * workers + MEASURED_NGINX_PEAK_MIB


def memory_needed_mib(workers: int) -> int:
    """Task memory that keeps HEADROOM free above the estimated peak."""
    return math.ceil(peak_mib(workers) / (1 - HEADROOM))


def max_workers(memory_mib: int) -> int:
    """The most workers a task of ``memory_mib`` holds with headroom (0 if not even one fits)."""
    workers = 0
    while memory_needed_mib(workers + 1) <= memory_mib:
        workers += 1
    return workers
