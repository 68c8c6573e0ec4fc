"""Resident memory of the MLflow task's processes, to size the Fargate task.

Starts the native stack with the deployed defaults, then reports the memory
of the whole MLflow process tree (uvicorn, which takes over the entrypoint's
process, and its workers) and of nginx: after start, peak under concurrent log-batch load
through the proxy, and after the load. RSS sums count shared pages once per
process, so they overstate what the cgroup (Fargate's limit) sees; PSS is
the fair share. Sizing uses the RSS peak, the safe side, with 30% headroom:
the figures measured with this script, and the model made from them, live in
stacks/task_sizing.py (the configuration checks mlflow_workers against it).

    python benchmarks/server_memory.py [--workers 2] [--mlflow-defaults]
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil
import requests

from localrun.load import create_runs, log_batches, positive
from localrun.process import ManagedProcess
from localrun.stack import running_stack
from stacks import task_sizing

MIB = 1024 * 1024
HEADROOM = task_sizing.HEADROOM
# Fargate memory choices (MiB) per CPU setting.
FARGATE_MEMORY = {512: range(1024, 4097, 1024), 1024: range(2048, 8193, 1024)}


def tree_memory(process: ManagedProcess) -> tuple[int, int]:
    """(RSS sum, PSS sum) in bytes over the process and its descendants."""
    rss = pss = 0
    for pid in process.process_tree_pids():
        try:
            info = psutil.Process(pid).memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        rss += info.rss
        pss += getattr(info, "pss", info.rss)
    return rss, pss


class PeakSampler:
    """Samples a process tree's memory in the background, keeps the peak."""

    def __init__(self, process: ManagedProcess, interval: float = 0.25) -> None:
        self.process, self.interval = process, interval
        self.peak = (0, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            rss, pss = tree_memory(self.process)
            self.peak = (max(self.peak[0], rss), max(self.peak[1], pss))
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class TaskCgroup:
    """A memory cgroup holding what the Fargate task would run: MLflow's tree and nginx.

    The cgroup's charge is what the task's memory limit is enforced on (RSS
    sums count a page once per process that maps it). cgroup v1: MLflow and
    nginx are restarted from inside it, so everything they allocate is charged
    to it from the start (page cache of files read before stays with whoever
    read them first: the anonymous figure is the exact one). Where no memory
    cgroup can be made (no v1 hierarchy, not root), `available` is False and
    `why` says why.
    """

    ROOT = Path("/sys/fs/cgroup/memory")

    def __init__(self) -> None:
        self.path = self.ROOT / f"mlflow-task-benchmark-{os.getpid()}"
        self.available, self.why = False, ""

    def __enter__(self) -> TaskCgroup:
        try:
            self.path.mkdir()
            self.available = True
        except OSError as error:
            self.why = f"{self.ROOT}: {error.strerror}"
        return self

    @contextmanager
    def hosting(self) -> Iterator[None]:
        """This process inside the cgroup, so what it starts meanwhile is born there."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))
        try:
            yield
        finally:
            (self.ROOT / "cgroup.procs").write_text(str(os.getpid()))

    def charge(self) -> tuple[int, int]:
        """(charged, anonymous) bytes now; anonymous pages are the ones pressure cannot drop."""
        stat = dict(line.split() for line in (self.path / "memory.stat").read_text().splitlines())
        return int((self.path / "memory.usage_in_bytes").read_text()), int(stat["total_rss"])

    def reset_peak(self) -> None:
        (self.path / "memory.max_usage_in_bytes").write_text("0")

    def peak(self) -> int:
        return int((self.path / "memory.max_usage_in_bytes").read_text())

    def __exit__(self, *exc: object) -> None:
        """Removes the cgroup once the stopped stack's last process has left it."""
        deadline = time.monotonic() + 10
        while self.available:
            try:
                self.path.rmdir()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


def browse(base_url: str, auth: tuple[str, str], run_id: str, seconds: float) -> int:
    """What a person in the UI and a notebook read while jobs log: searches,
    metric histories, artifact listings (the server then loads its S3 client),
    the UI page and its largest bundle. Returns the number of calls."""
    session = requests.Session()
    session.auth = auth
    api = f"{base_url}/ajax-api/2.0/mlflow"
    bundle = None
    calls, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        session.post(f"{api}/experiments/search", json={"max_results": 100})
        session.post(f"{api}/runs/search", json={"experiment_ids": ["0", "1"], "max_results": 500})
        session.get(f"{api}/metrics/get-history", params={"run_id": run_id, "metric_key": "m0"})
        session.get(f"{api}/artifacts/list", params={"run_id": run_id})
        session.get(f"{api}/registered-models/search")
        page = session.get(f"{base_url}/")
        if bundle is None:
            found = re.search(r'src="([^"]*static-files/static/js/main[^"]*\.js)"', page.text)
            bundle = f"{base_url}/{found.group(1).lstrip('./')}" if found else ""
        if bundle:
            session.get(bundle)
        calls += 7
    return calls


def fmt(pair: tuple[int, int]) -> str:
    return f"RSS {pair[0] / MIB:7.0f} MiB   PSS {pair[1] / MIB:7.0f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=positive(int), default=None, help="MLflow workers (default 2)")
    parser.add_argument("--clients", type=positive(int), default=8)
    parser.add_argument("--seconds", type=positive(float), default=20, help="length of the load")
    parser.add_argument(
        "--mlflow-defaults", action="store_true",
        help="run with MLflow's own defaults (job runner on, 4 workers) for comparison",
    )  # fmt: skip
    args = parser.parse_args()
    server_env = {}
    workers = args.workers
    if args.mlflow_defaults:
        server_env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "true"
        workers = workers or 4

    with (
        tempfile.TemporaryDirectory(prefix="server-memory-") as tmp,
        TaskCgroup() as cgroup,
        running_stack(Path(tmp), workers=workers, server_env=server_env) as stack,
    ):
        if cgroup.available:
            with cgroup.hosting():
                stack.restart_mlflow()
                stack.restart_nginx()
        time.sleep(3)  # let start-up allocations settle before the idle figure
        idle = tree_memory(stack.mlflow.process)
        nginx_idle = tree_memory(stack.nginx.process)
        # (charged, anonymous) bytes, read only where the cgroup exists.
        charged: dict[str, tuple[int, int]] = {}
        if cgroup.available:
            charged["after start "] = cgroup.charge()
            cgroup.reset_peak()
        auth = (stack.username, stack.password)
        runs = create_runs(stack.proxy_url, auth, args.clients)
        reads: list[int] = []
        with PeakSampler(stack.mlflow.process) as mlflow_peak, PeakSampler(stack.nginx.process) as nginx_peak:
            reader = threading.Thread(target=lambda: reads.append(browse(stack.proxy_url, auth, runs[0], args.seconds)))
            reader.start()
            load = log_batches(stack.proxy_url, auth, runs, args.seconds)
            reader.join(timeout=args.seconds + 60)
        after = tree_memory(stack.mlflow.process)
        processes = len(stack.mlflow.process.process_tree_pids())
        if cgroup.available:
            charged["after load  "] = cgroup.charge()
            charged_peak = cgroup.peak()

    label = "MLflow defaults" if args.mlflow_defaults else "deployed defaults"
    print(f"MLflow process tree ({label}, workers {workers or 2}, {processes} processes)")
    print(f"  after start   {fmt(idle)}")
    print(f"  peak in load  {fmt(mlflow_peak.peak)}   ({load.requests} log-batch calls, "
          f"{load.throughput:.0f}/s, {args.clients} clients, {load.errors} errors; "
          f"{sum(reads)} UI/API reads)")  # fmt: skip
    print(f"  after load    {fmt(after)}")
    print(f"nginx           {fmt(nginx_idle)} after start, {fmt(nginx_peak.peak)} peak")
    if charged:
        print("task cgroup (MLflow and nginx; what the task's memory limit is enforced on)")
        for moment, (bytes_charged, anonymous) in charged.items():
            print(f"  {moment}  charged {bytes_charged / MIB:7.0f} MiB   anonymous {anonymous / MIB:7.0f} MiB")
        print(f"  peak in load  charged {charged_peak / MIB:7.0f} MiB")
    else:
        print(f"task cgroup: not measured ({cgroup.why})")
    need = (mlflow_peak.peak[0] + nginx_peak.peak[0]) / MIB / (1 - HEADROOM)
    print(f"task memory for {HEADROOM:.0%} headroom over the RSS peak: >= {math.ceil(need)} MiB")
    estimate, model = task_sizing.peak_mib(workers or 2), task_sizing.memory_needed_mib(workers or 2)
    print(f"  stacks/task_sizing.py estimates {estimate} MiB at peak, {model} MiB with headroom")
    for cpu, choices in FARGATE_MEMORY.items():
        fit = next((m for m in choices if m >= need), None)
        print(f"  smallest Fargate size with cpu={cpu}: {fit or 'none'} MiB")


if __name__ == "__main__":
    main()
