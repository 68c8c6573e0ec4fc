"""A CloudWatch dashboard that follows a request: API Gateway -> ALB -> tasks -> Aurora, plus S3."""

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from constructs import Construct

from stacks.components.service_metrics import ServiceMetrics

_PERIOD = 5  # minutes per point on the graphs
_WIDTH = 8  # three graphs per 24-column row


def _graph(
    title: str,
    left: list[cw.IMetric],
    *,
    right: list[cw.IMetric] | None = None,
    annotations: list[cw.HorizontalAnnotation] | None = None,
) -> cw.GraphWidget:
    return cw.GraphWidget(
        title=title,
        left=left,
        right=right or [],
        left_annotations=annotations or [],
        width=_WIDTH,
        height=6,
        period=Duration.minutes(_PERIOD),
    )


def _api_row(name: str, m: ServiceMetrics) -> list[cw.IWidget]:
    """Requests, latency and 5xx rate of one HTTP API (the password API, or IAM sign-in's)."""
    p = _PERIOD
    return [
        _graph(
            f"{name}: requests and errors", [m.api_requests(p)], right=[m.api_errors("4xx", p), m.api_errors("5xx", p)]
        ),
        _graph(
            f"{name}: latency (ms)",
            [m.api_latency("p50", p), m.api_latency("p95", p), m.api_integration_latency("p95", p)],
        ),
        _graph(f"{name}: 5xx rate (%)", [m.api_5xx_rate(p)]),
    ]


class ServiceDashboard(Construct):
    """One row per hop of the request path, under the alarms' current states.

    With ``iam_metrics`` (IAM sign-in) two rows follow the ALB's: the IAM API and its target group.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        dashboard_name: str,
        metrics: ServiceMetrics,
        alarms: list[cw.IAlarm],
        aurora_max_acu: float,
        max_connections: int,
        iam_metrics: ServiceMetrics | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        m, p = metrics, _PERIOD
        self.dashboard = cw.Dashboard(
            self, "Dashboard", dashboard_name=dashboard_name, default_interval=Duration.hours(6)
        )
        self.dashboard.add_widgets(
            cw.TextWidget(
                markdown="## MLflow request path\nclient → **API Gateway** (HTTP API) → VPC link → internal **ALB** → "
                "Fargate **tasks** (nginx → MLflow) → **Aurora** PostgreSQL; artifacts in the **S3** bucket. "
                "Alarm thresholds and their reasons: docs/operations.md, section Alarms.",
                width=24,
                height=2,
            ),
            cw.AlarmStatusWidget(title="Alarms", alarms=alarms, width=24, height=3),
        )
        self.dashboard.add_widgets(*_api_row("API Gateway", m))
        self.dashboard.add_widgets(
            _graph("ALB: requests and 5xx", [m.alb_requests(p)], right=[m.alb_5xx("target", p), m.alb_5xx("elb", p)]),
            _graph("ALB: target response time p95 (s)", [m.alb_response_time(p)]),
            _graph("ALB: healthy and unhealthy targets", [m.healthy_targets(1), m.unhealthy_targets(1)]),
        )
        if iam_metrics is not None:
            self.dashboard.add_widgets(*_api_row("IAM API (mlflow-iam)", iam_metrics))
            self.dashboard.add_widgets(
                _graph(
                    "ALB, IAM listener: healthy and unhealthy targets",
                    [iam_metrics.healthy_targets(1), iam_metrics.unhealthy_targets(1)],
                ),
                _graph("ALB, IAM listener: target 5xx", [iam_metrics.target_group_5xx(p)]),
            )
        task_graphs = [
            _graph("Tasks: CPU and memory (%)", [m.task_utilization("cpu", p), m.task_utilization("memory", p)]),
            _graph("Tasks: unexpected stops", [m.unexpected_task_stops(p)]),
        ]
        if m.container_insights:  # without it, the ALB's healthy targets above stand for running tasks
            task_graphs.insert(
                0, _graph("Tasks: running and desired", [m.task_count("Running", 1), m.task_count("Desired", 1)])
            )
        self.dashboard.add_widgets(*task_graphs)
        self.dashboard.add_widgets(
            _graph(
                "Aurora: capacity (ACU)",
                [m.aurora_capacity(p)],
                annotations=[cw.HorizontalAnnotation(value=aurora_max_acu, label="aurora_max_acu")],
            ),
            _graph("Aurora: CPU (%)", [m.aurora_cpu(p)]),
            _graph(
                "Aurora: connections",
                [m.aurora_connections(p)],
                annotations=[cw.HorizontalAnnotation(value=max_connections, label="max_connections")],
            ),
        )
        self.dashboard.add_widgets(
            _graph(
                "S3 artifacts: requests and errors",
                [m.bucket_metric("AllRequests", p)],
                right=[m.bucket_metric("4xxErrors", p), m.bucket_metric("5xxErrors", p)],
            ),
            _graph("S3 artifacts: bytes", [m.bucket_metric("BytesDownloaded", p), m.bucket_metric("BytesUploaded", p)]),
            _graph("S3 artifacts: error rates (%)", [m.bucket_error_rate("4xx", p), m.bucket_error_rate("5xx", p)]),
        )
