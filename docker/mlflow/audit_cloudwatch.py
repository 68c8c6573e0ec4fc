"""Audit lines to their own CloudWatch Logs group, sent from a thread so no request waits for it.

The awslogs driver ships a container's whole output to one group and cannot pick lines out,
so the server sends its audit lines itself (PutLogEvents), to the group named by
MLFLOW_AUDIT_LOG_GROUP: one stream per server process, batches every few seconds. The task
role may create streams and put events in that group only. A request only queues its line;
a line that cannot be queued (queue full) or delivered (CloudWatch refused or unreachable,
process stopping with lines left) goes to standard error instead, so it lands in the mlflow
container's log group rather than nowhere.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

# CloudWatch Logs' limits: an event is at most 256 KiB with 26 bytes of overhead, a batch at
# most 1 MiB (each event counted with the overhead) and 10,000 events.
EVENT_OVERHEAD = 26
MAX_EVENT_BYTES = 256 * 1024 - EVENT_OVERHEAD
MAX_BATCH_BYTES = 1024 * 1024
MAX_BATCH_EVENTS = 10_000
# The most lines waiting: a burst beyond it goes to standard error, memory stays bounded.
MAX_QUEUED = 20_000
# Waiting at exit for the last batch, within the container's 30 s stop timeout.
EXIT_WAIT_SECONDS = 5.0

_logger = logging.getLogger(__name__)
_STOP = object()


def logs_client() -> Any:
    """A CloudWatch Logs client that gives up quickly (its region and endpoint from the environment)."""
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=3, read_timeout=10, retries={"mode": "standard", "max_attempts": 3})
    return boto3.client("logs", config=config)


def stream_name() -> str:
    """This process's stream: the host (the task) and the process, unique across restarts."""
    return f"mlflow/{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"


class CloudWatchSink:
    """A sink (a callable taking one line) that delivers to `group` in batches from a thread."""

    def __init__(
        self,
        group: str,
        fallback: Callable[[str], None],
        *,
        client: Callable[[], Any] = logs_client,
        interval: float = 2.0,
        max_queued: int = MAX_QUEUED,
    ) -> None:
        self.group = group
        self.fallback = fallback
        self.client_factory = client
        self.interval = interval
        self.lines: queue.Queue[Any] = queue.Queue(maxsize=max_queued)
        self.stream: str | None = None
        # The batch being sent: written to the fallback too if the process must stop meanwhile.
        self.sending: list[tuple[int, str]] = []
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def __call__(self, line: str) -> None:
        self._start()
        try:
            self.lines.put_nowait((int(time.time() * 1000), line))
        except queue.Full:
            self.fallback(line)

    def _start(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="audit-cloudwatch", daemon=True)
                self._thread.start()
                atexit.register(self.close)

    def close(self, timeout: float = EXIT_WAIT_SECONDS) -> None:
        """Send what is queued (waiting at most `timeout`); what is left goes to the fallback."""
        thread = self._thread
        if thread is None:
            return
        try:
            self.lines.put(_STOP, timeout=timeout)
        except queue.Full:
            pass
        thread.join(timeout)
        pending = list(self.sending) if thread.is_alive() else []
        for _, line in pending:  # a daemon thread dies with the process: better twice than never
            self.fallback(line)
        while True:
            try:
                item = self.lines.get_nowait()
            except queue.Empty:
                return
            if item is not _STOP:
                self.fallback(item[1])

    def _run(self) -> None:
        client = None
        stopping = False
        while not stopping:
            batch, stopping = self._next_batch()
            if not batch:
                continue
            try:
                client = client or self.client_factory()
                self._put(client, batch)
            except Exception as error:  # noqa: BLE001 - nothing may stop the thread; the lines are kept
                _logger.warning(
                    "%d audit lines not delivered to %s (%s): written to standard error",
                    len(batch), self.group, type(error).__name__,
                )  # fmt: skip
                for _, line in batch:
                    self.fallback(line)
            finally:
                self.sending = []

    def _next_batch(self) -> tuple[list[tuple[int, str]], bool]:
        """Lines queued within `interval` of the first, up to CloudWatch's batch limits; and whether to stop."""
        first = self.lines.get()
        if first is _STOP:
            return [], True
        batch, size = [first], len(first[1].encode()) + EVENT_OVERHEAD
        self.sending = batch  # taken from the queue: close() must still see these
        deadline = time.monotonic() + self.interval
        while len(batch) < MAX_BATCH_EVENTS:
            try:
                item = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is _STOP:
                return batch, True
            size += len(item[1].encode()) + EVENT_OVERHEAD
            batch.append(item)
            if size > MAX_BATCH_BYTES - MAX_EVENT_BYTES - EVENT_OVERHEAD:
                break  # the next line might not fit
        return batch, False

    def _put(self, client: Any, batch: list[tuple[int, str]]) -> None:
        events = []
        for timestamp, line in sorted(batch, key=lambda item: item[0]):  # CloudWatch wants them in order
            if len(line.encode()) > MAX_EVENT_BYTES:
                self.fallback(line)
            else:
                events.append({"timestamp": timestamp, "message": line})
        if not events:
            return
        if self.stream is None:
            stream = stream_name()
            client.create_log_stream(logGroupName=self.group, logStreamName=stream)
            self.stream = stream
        client.put_log_events(logGroupName=self.group, logStreamName=self.stream, logEvents=events)
