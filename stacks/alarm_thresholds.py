"""Every alarm's threshold, period and reasoning, in one place.

The monitoring stack builds one CloudWatch alarm per rule below, and the
README's "Alarms" table mirrors this list (tests/test_readme.py keeps them in
step). A rule whose ``relative_to`` is set has a threshold that is a fraction of
a limit derived from the configuration (Aurora's capacity ceiling, its
connection limit); the others are absolute. With IAM sign-in, the rules that watch
the password API and its target group get twins (``IAM_SIGN_IN_ALARMS``) on the
IAM API and its target group: the same thresholds, taken from those rules.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, replace
from typing import Final

# Every alarm's name starts with this; the alarm topic admits only alarms named so.
ALARM_NAME_PREFIX: Final = "mlflow-"
# Below this many requests in a period a single error is too large a share to mean anything.
MIN_REQUESTS_FOR_RATE: Final = 20


@dataclass(frozen=True)
class AlarmRule:
    """One alarm: what it watches, when it fires and why there."""

    key: str  # construct id; the alarm is named ALARM_NAME_PREFIX + key
    watches: str  # the metric in words (README table, alarm description)
    threshold: float
    unit: str
    comparison: str  # ">" or ">="
    period_minutes: int
    evaluation_periods: int
    datapoints_to_alarm: int
    reason: str
    relative_to: str | None = None  # "aurora_max_acu" or "max_connections": threshold is a fraction of it
    missing_data_breaches: bool = False
    # An IAM sign-in twin: the key of the rule whose metric it reads on the IAM entry point.
    twin_of: str | None = None

    @property
    def metric_key(self) -> str:
        """The rule whose metric this alarm reads (on its own entry point)."""
        return self.twin_of or self.key

    @property
    def alarm_name(self) -> str:
        return f"{ALARM_NAME_PREFIX}{self.key}"

    def describe_threshold(self) -> str:
        """The threshold as the README states it."""
        if self.relative_to:
            return f"{self.comparison} {self.threshold:.0%} of {self.relative_to}"
        return f"{self.comparison} {self.threshold:g} {self.unit}".rstrip()

    def describe_evaluation(self) -> str:
        """How long it must hold, as the README states it."""
        return f"{self.datapoints_to_alarm} of {self.evaluation_periods} periods of {self.period_minutes} min"

    def readme_row(self) -> str:
        """This rule's row in the README's Alarms table."""
        threshold, evaluation = self.describe_threshold(), self.describe_evaluation()
        cells = [f"`{self.alarm_name}`", self.watches, threshold, evaluation, self.reason]
        return "| " + " | ".join(cells) + " |"

    def absolute_threshold(self, limit: float | None = None) -> float:
        """The number CloudWatch compares with: relative thresholds need their limit."""
        if self.relative_to is None:
            return self.threshold
        if limit is None:
            raise ValueError(f"{self.key}: a threshold relative to {self.relative_to} needs that limit")
        return round(self.threshold * limit, 2)


ALARMS: Final = (
    AlarmRule(
        key="api-5xx-rate",
        watches=f"HTTP API 5xx responses, % of requests (periods with at least {MIN_REQUESTS_FOR_RATE} requests)",
        threshold=5,
        unit="%",
        comparison=">",
        period_minutes=5,
        evaluation_periods=2,
        datapoints_to_alarm=2,
        reason="A 5xx at the API means nginx, MLflow or the database failed the request (the ALB's 502/503 and "
        "the 30 s timeout's 504 included). Clients retry the odd one; 5% for 10 minutes is an outage for someone.",
    ),
    AlarmRule(
        key="api-latency-p95",
        watches="HTTP API p95 latency",
        threshold=3000,
        unit="ms",
        comparison=">",
        period_minutes=5,
        evaluation_periods=3,
        datapoints_to_alarm=3,
        reason="MLflow API calls take tens of milliseconds (p95 120 ms through the proxy in the benchmark). A paused "
        "Aurora delays the first requests by about 15 s, but only within one period; 15 slow minutes mean the tasks "
        "or the database are saturated, before API Gateway's 30 s limit starts cutting requests off.",
    ),
    AlarmRule(
        key="alb-unhealthy-targets",
        watches="ALB targets failing the /elb-status health check",
        threshold=1,
        unit="targets",
        comparison=">=",
        period_minutes=1,
        evaluation_periods=5,
        datapoints_to_alarm=5,
        reason="A target turns unhealthy after 3 failed checks (45 s). A starting task may fail checks while it "
        "upgrades the schema, inside ECS's 180 s grace period; five minutes in a row is past any normal start.",
    ),
    AlarmRule(
        key="tasks-below-desired",
        watches="Healthy ALB targets (running tasks) below the autoscaling floor (min_task_count - HealthyHostCount)",
        threshold=1,
        unit="tasks",
        comparison=">=",
        period_minutes=1,
        evaluation_periods=10,
        datapoints_to_alarm=10,
        reason="ECS needs 1-3 minutes to pull the image and start a task it adds or replaces; ten minutes short means "
        "it cannot start or keep them (image, secrets, capacity, crashing containers). No data counts as breaching: "
        "the ALB reports no healthy count for a target group without targets.",
        missing_data_breaches=True,
    ),
    AlarmRule(
        key="task-restarts",
        watches="Tasks stopped for a reason other than a deployment or scale-in (EventBridge rule matches)",
        threshold=3,
        unit="stops",
        comparison=">=",
        period_minutes=15,
        evaluation_periods=1,
        datapoints_to_alarm=1,
        reason="Every such stop is also sent to the topic as it happens, with ECS's stop reason. Three in 15 minutes "
        "is a crash loop: out of memory, failing health checks, a broken image or migration.",
    ),
    AlarmRule(
        key="aurora-capacity-at-max",
        watches="Aurora capacity in ACUs (ServerlessDatabaseCapacity, average)",
        threshold=0.9,
        unit="ACU",
        comparison=">=",
        period_minutes=5,
        evaluation_periods=3,
        datapoints_to_alarm=3,
        reason="At its ceiling Aurora cannot add memory or CPU; 15 minutes within 10% of it means aurora_max_acu is "
        "too low for the load (queries queue, latency follows).",
        relative_to="aurora_max_acu",
    ),
    AlarmRule(
        key="aurora-cpu",
        watches="Aurora CPU utilization",
        threshold=80,
        unit="%",
        comparison=">",
        period_minutes=5,
        evaluation_periods=3,
        datapoints_to_alarm=3,
        reason="Serverless v2 adds capacity well before its CPU saturates; 80% for 15 minutes means it has no room "
        "left (at aurora_max_acu) or a query is pathological.",
    ),
    AlarmRule(
        key="aurora-connections",
        watches="Aurora database connections (maximum)",
        threshold=0.8,
        unit="connections",
        comparison=">=",
        period_minutes=5,
        evaluation_periods=2,
        datapoints_to_alarm=2,
        reason="New connections fail at max_connections, which Aurora derives from aurora_max_acu (823 at 4 ACU). "
        "MLflow holds at most 15 per worker (SQLAlchemy's pool of 5 plus 10 overflow), so 80% means far more "
        "workers or clients than configured, or leaked sessions.",
        relative_to="max_connections",
    ),
    AlarmRule(
        key="artifacts-5xx-rate",
        watches=f"Artifact bucket 5xx responses, % of requests (periods with at least {MIN_REQUESTS_FOR_RATE})",
        threshold=1,
        unit="%",
        comparison=">",
        period_minutes=5,
        evaluation_periods=2,
        datapoints_to_alarm=2,
        reason="S3 server errors are rare and clients retry them; 1% for 10 minutes is an S3 incident or throttling "
        "(503 Slow Down) that fails artifact uploads.",
    ),
    AlarmRule(
        key="artifacts-4xx-rate",
        watches=f"Artifact bucket 4xx responses, % of requests (periods with at least {MIN_REQUESTS_FOR_RATE})",
        threshold=10,
        unit="%",
        comparison=">",
        period_minutes=5,
        evaluation_periods=3,
        datapoints_to_alarm=3,
        reason="403s follow a policy or role change, 404s a missing artifact or expired presigned URL. MLflow rarely "
        "asks for keys that do not exist, so one request in ten failing for 15 minutes is a permissions or data "
        "problem.",
    ),
)


def rule(key: str) -> AlarmRule:
    """The rule with this key."""
    matches = [candidate for candidate in ALARMS if candidate.key == key]
    if len(matches) != 1:
        raise KeyError(key)
    return matches[0]


def _iam_twin(password_key: str, watches: str) -> AlarmRule:
    password = rule(password_key)
    return replace(
        password,
        key=f"iam-{password_key}",
        watches=watches,
        reason=f"As `{password.alarm_name}`, for the clients that sign in with IAM (iam_sign_in on, accounts "
        "or sso mode): their requests take this API and listener only.",
        twin_of=password_key,
    )


# Alarms only a deployment with IAM sign-in has: the IAM API (mlflow-iam) and its ALB target group.
IAM_SIGN_IN_ALARMS: Final = (
    _iam_twin(
        "api-5xx-rate",
        f"IAM API (`mlflow-iam`) 5xx responses, % of requests (periods with at least {MIN_REQUESTS_FOR_RATE} requests)",
    ),
    _iam_twin("api-latency-p95", "IAM API (`mlflow-iam`) p95 latency"),
    _iam_twin("alb-unhealthy-targets", "Targets of the ALB's IAM sign-in listener failing the /elb-status check"),
)


# Default max_connections of Aurora PostgreSQL Serverless v2 by maximum ACU, from the
# Aurora User Guide ("Aurora Serverless v2 ... maximum connections"). The value follows
# the instance memory, which grows linearly with the ACU ceiling, so values in between
# are interpolated; with a minimum of 0 or 0.5 ACU PostgreSQL caps it at 2000.
_MAX_CONNECTIONS_BY_MAX_ACU: Final = ((1.0, 189), (4.0, 823), (8.0, 1669), (16.0, 3360), (32.0, 5000))
_MAX_CONNECTIONS_CAP_AT_LOW_MIN_ACU: Final = 2000


def aurora_postgres_max_connections(min_acu: float, max_acu: float) -> int:
    """max_connections Aurora PostgreSQL Serverless v2 sets for this capacity range."""
    points = _MAX_CONNECTIONS_BY_MAX_ACU
    if max_acu <= points[0][0]:
        value = float(points[0][1])
    elif max_acu >= points[-1][0]:
        value = float(points[-1][1])
    else:
        index = bisect.bisect_left([acu for acu, _ in points], max_acu)
        (low_acu, low), (high_acu, high) = points[index - 1], points[index]
        value = low + (high - low) * (max_acu - low_acu) / (high_acu - low_acu)
    if min_acu <= 0.5:
        value = min(value, _MAX_CONNECTIONS_CAP_AT_LOW_MIN_ACU)
    return int(value)
