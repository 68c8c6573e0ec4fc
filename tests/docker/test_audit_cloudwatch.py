"""docker/mlflow/audit_cloudwatch.py against moto's CloudWatch Logs: delivered in batches, never lost,
never holding up the caller."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws

from tests.docker.image_modules import image_module
from tests.fake_aws import use_fake_aws

GROUP = "mlflow-audit"


@pytest.fixture(scope="module")
def sinks() -> Iterator[ModuleType]:
    with image_module("audit_cloudwatch") as module:
        yield module


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    use_fake_aws(monkeypatch, "eu-west-1")
    with mock_aws():
        client = boto3.client("logs")
        client.create_log_group(logGroupName=GROUP)
        yield client


def delivered(logs: Any) -> list[str]:
    streams = logs.describe_log_streams(logGroupName=GROUP)["logStreams"]
    return [
        event["message"]
        for stream in streams
        for event in logs.get_log_events(logGroupName=GROUP, logStreamName=stream["logStreamName"])["events"]
    ]


def test_lines_reach_the_group_in_order_on_one_stream_of_this_process(sinks: ModuleType, logs: Any) -> None:
    fallback: list[str] = []
    sink = sinks.CloudWatchSink(GROUP, fallback.append, interval=0.2)
    lines = [json.dumps({"n": n}) for n in range(50)]
    for line in lines:
        sink(line)
    sink.close()
    assert delivered(logs) == lines
    assert fallback == []
    (stream,) = logs.describe_log_streams(logGroupName=GROUP)["logStreams"]
    assert stream["logStreamName"] == sink.stream and stream["logStreamName"].startswith("mlflow/")


def test_undeliverable_lines_go_to_the_fallback(sinks: ModuleType, logs: Any, caplog: pytest.LogCaptureFixture) -> None:
    """A group the role may not write to (here: missing) loses nothing: the lines go to standard error."""
    fallback: list[str] = []
    sink = sinks.CloudWatchSink("no-such-group", fallback.append, interval=0.1)
    sink("one")
    sink("two")
    with caplog.at_level("WARNING"):
        sink.close()
    assert fallback == ["one", "two"]
    assert "2 audit lines not delivered to no-such-group (ResourceNotFoundException)" in caplog.text


def test_an_oversized_line_goes_to_the_fallback_the_rest_is_delivered(sinks: ModuleType, logs: Any) -> None:
    fallback: list[str] = []
    sink = sinks.CloudWatchSink(GROUP, fallback.append, interval=0.1)
    big = "x" * (sinks.MAX_EVENT_BYTES + 1)
    for line in ("before", big, "after"):
        sink(line)
    sink.close()
    assert delivered(logs) == ["before", "after"]
    assert fallback == [big]


class SlowLogs:
    """A CloudWatch that hangs until released: the caller must not wait for it."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.events: list[str] = []

    def create_log_stream(self, **_: Any) -> None:
        self.release.wait(10)

    def put_log_events(self, logEvents: list[dict], **_: Any) -> None:  # noqa: N803 - boto3's name
        self.events += [event["message"] for event in logEvents]


def test_a_hanging_cloudwatch_never_holds_up_a_request_and_a_full_queue_spills(sinks: ModuleType) -> None:
    slow, fallback = SlowLogs(), []
    sink = sinks.CloudWatchSink(GROUP, fallback.append, client=lambda: slow, interval=0.05, max_queued=3)
    sink("first")  # taken by the thread, which then hangs
    finished = threading.Event()

    def burst() -> None:
        for n in range(10):
            sink(f"line-{n}")
        finished.set()

    threading.Thread(target=burst).start()
    assert finished.wait(2), "a request waited for CloudWatch"
    assert len(fallback) >= 7  # the queue holds 3; the rest spilled at once
    slow.release.set()
    sink.close()
    assert sorted(slow.events + fallback) == sorted(["first"] + [f"line-{n}" for n in range(10)])


def test_lines_left_at_exit_are_not_lost(sinks: ModuleType) -> None:
    slow, fallback = SlowLogs(), []
    sink = sinks.CloudWatchSink(GROUP, fallback.append, client=lambda: slow, interval=0.05)
    for line in ("a", "b", "c"):
        sink(line)
    sink.close(timeout=0.3)  # CloudWatch still hanging when the process must go
    assert sorted(fallback) == ["a", "b", "c"]  # in flight or still queued: to standard error
    slow.release.set()
