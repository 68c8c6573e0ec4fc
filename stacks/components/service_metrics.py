"""The CloudWatch metrics along the request path, shared by the alarms and the dashboard."""

from __future__ import annotations

import copy

from aws_cdk import Duration
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_events as events
from aws_cdk import aws_rds as rds
from aws_cdk import aws_s3 as s3

from stacks.alarm_thresholds import MIN_REQUESTS_FOR_RATE

CONTAINER_INSIGHTS = "ECS/ContainerInsights"
S3_NAMESPACE = "AWS/S3"


def _minutes(value: int) -> Duration:
    return Duration.minutes(value)


class ServiceMetrics:
    """Metric factories for API Gateway, the ALB, the ECS service, Aurora and the artifact bucket.

    Each method takes the period, so one metric serves a 1-minute alarm and a
    5-minute dashboard graph alike. Rates are metric math guarded by a
    minimum request count, so an idle server never looks like a failing one.
    """

    def __init__(
        self,
        *,
        api_stage: apigw.HttpStage,
        load_balancer: elbv2.ApplicationLoadBalancer,
        target_group: elbv2.ApplicationTargetGroup,
        service: ecs.FargateService,
        task_stop_rule: events.IRule,
        database: rds.DatabaseCluster,
        bucket: s3.IBucket,
        request_metrics_filter_id: str,
        min_tasks: int,
        container_insights: bool,
    ) -> None:
        self.min_tasks = min_tasks
        self.container_insights = container_insights
        self._stage = api_stage
        self._load_balancer = load_balancer
        self._target_group = target_group
        self._database = database
        self._task_stop_rule = task_stop_rule
        self._service_dimensions = {"ClusterName": service.cluster.cluster_name, "ServiceName": service.service_name}
        self._service = service
        self._bucket_dimensions = {"BucketName": bucket.bucket_name, "FilterId": request_metrics_filter_id}

    def entry_point(self, *, api_stage: apigw.HttpStage, target_group: elbv2.ApplicationTargetGroup) -> ServiceMetrics:
        """The same metrics for a second way in (IAM sign-in's API and target group) to the same tasks."""
        other = copy.copy(self)
        other._stage = api_stage
        other._target_group = target_group
        return other

    # --- API Gateway (namespace AWS/ApiGateway, dimensions ApiId + Stage) ---

    def api_requests(self, minutes: int) -> cw.Metric:
        return self._stage.metric_count(statistic="Sum", period=_minutes(minutes), label="requests")

    def api_errors(self, status: str, minutes: int) -> cw.Metric:
        factory = self._stage.metric_server_error if status == "5xx" else self._stage.metric_client_error
        return factory(statistic="Sum", period=_minutes(minutes), label=status)

    def api_5xx_rate(self, minutes: int) -> cw.MathExpression:
        return _rate(self.api_errors("5xx", minutes), self.api_requests(minutes), minutes, "API 5xx %", "api5xx")

    def api_latency(self, statistic: str, minutes: int) -> cw.Metric:
        return self._stage.metric_latency(statistic=statistic, period=_minutes(minutes), label=f"latency {statistic}")

    def api_integration_latency(self, statistic: str, minutes: int) -> cw.Metric:
        return self._stage.metric_integration_latency(
            statistic=statistic, period=_minutes(minutes), label=f"integration {statistic}"
        )

    # --- ALB (AWS/ApplicationELB) ---

    def alb_requests(self, minutes: int) -> cw.Metric:
        return self._load_balancer.metrics.request_count(statistic="Sum", period=_minutes(minutes), label="requests")

    def alb_5xx(self, origin: str, minutes: int) -> cw.Metric:
        """origin "target" (nginx/MLflow answered 5xx) or "elb" (the ALB itself: no target, timeout)."""
        if origin == "target":
            code = elbv2.HttpCodeTarget.TARGET_5XX_COUNT
            return self._load_balancer.metrics.http_code_target(
                code, statistic="Sum", period=_minutes(minutes), label="target 5xx"
            )
        return self._load_balancer.metrics.http_code_elb(
            elbv2.HttpCodeElb.ELB_5XX_COUNT, statistic="Sum", period=_minutes(minutes), label="ALB 5xx"
        )

    def alb_response_time(self, minutes: int) -> cw.Metric:
        return self._load_balancer.metrics.target_response_time(
            statistic="p95", period=_minutes(minutes), label="target response p95 (s)"
        )

    def unhealthy_targets(self, minutes: int) -> cw.Metric:
        return self._target_metric("UnHealthyHostCount", "Maximum", minutes, "unhealthy")

    def healthy_targets(self, minutes: int) -> cw.Metric:
        return self._target_metric("HealthyHostCount", "Minimum", minutes, "healthy")

    def target_group_5xx(self, minutes: int) -> cw.Metric:
        """5xx nginx or MLflow answered through this target group alone (alb_5xx counts every listener)."""
        return self._target_metric("HTTPCode_Target_5XX_Count", "Sum", minutes, "target 5xx")

    def _target_metric(self, name: str, statistic: str, minutes: int, label: str) -> cw.Metric:
        # Named from the load balancer itself: the target group's own metric helpers
        # derive its name from the listener ARN, which reads worse and means the same.
        return cw.Metric(
            namespace="AWS/ApplicationELB",
            metric_name=name,
            dimensions_map={
                "LoadBalancer": self._load_balancer.load_balancer_full_name,
                "TargetGroup": self._target_group.target_group_full_name,
            },
            statistic=statistic,
            period=_minutes(minutes),
            label=label,
        )

    # --- ECS service ---

    def task_count(self, which: str, minutes: int) -> cw.Metric:
        """which: "Running" or "Desired" (Container Insights, per service)."""
        return cw.Metric(
            namespace=CONTAINER_INSIGHTS,
            metric_name=f"{which}TaskCount",
            dimensions_map=self._service_dimensions,
            statistic="Average",
            period=_minutes(minutes),
            label=which.lower(),
        )

    def tasks_missing(self, minutes: int) -> cw.MathExpression:
        """The autoscaling floor minus the healthy ALB targets; no data counts as none healthy.

        The ALB's target metrics are free and need no Container Insights, which costs more
        than the rest of the monitoring together (docs/operations.md#cost).
        """
        return cw.MathExpression(
            expression=f"{self.min_tasks} - FILL(healthy, 0)",
            using_metrics={"healthy": self.healthy_targets(minutes)},
            period=_minutes(minutes),
            label="tasks missing",
        )

    def task_utilization(self, resource: str, minutes: int) -> cw.Metric:
        """resource "cpu" or "memory" (AWS/ECS, average over the service's tasks)."""
        factory = self._service.metric_cpu_utilization if resource == "cpu" else self._service.metric_memory_utilization
        return factory(statistic="Average", period=_minutes(minutes), label=f"{resource} %")

    def unexpected_task_stops(self, minutes: int) -> cw.Metric:
        """How often the unexpected-stop rule matched (AWS/Events TriggeredRules)."""
        return cw.Metric(
            namespace="AWS/Events",
            metric_name="TriggeredRules",
            dimensions_map={"RuleName": self._task_stop_rule.rule_name},
            statistic="Sum",
            period=_minutes(minutes),
            label="unexpected stops",
        )

    # --- Aurora (AWS/RDS, DBClusterIdentifier) ---

    def aurora_capacity(self, minutes: int) -> cw.Metric:
        return self._database.metric_serverless_database_capacity(
            statistic="Average", period=_minutes(minutes), label="ACU"
        )

    def aurora_cpu(self, minutes: int) -> cw.Metric:
        return self._database.metric_cpu_utilization(statistic="Average", period=_minutes(minutes), label="CPU %")

    def aurora_connections(self, minutes: int) -> cw.Metric:
        return self._database.metric_database_connections(
            statistic="Maximum", period=_minutes(minutes), label="connections"
        )

    # --- artifact bucket (AWS/S3 request metrics, BucketName + FilterId) ---

    def bucket_metric(self, name: str, minutes: int, statistic: str = "Sum") -> cw.Metric:
        return cw.Metric(
            namespace=S3_NAMESPACE,
            metric_name=name,
            dimensions_map=self._bucket_dimensions,
            statistic=statistic,
            period=_minutes(minutes),
            label=name,
        )

    def bucket_error_rate(self, status: str, minutes: int) -> cw.MathExpression:
        """status "4xx" or "5xx": % of the bucket's requests."""
        return _rate(
            self.bucket_metric(f"{status}Errors", minutes),
            self.bucket_metric("AllRequests", minutes),
            minutes,
            f"S3 {status} %",
            f"s3{status}",
        )


def _rate(errors: cw.Metric, requests: cw.Metric, minutes: int, label: str, tag: str) -> cw.MathExpression:
    """100 * errors / requests, or 0 in periods with too few requests to judge.

    ``tag`` names the metric ids, which must differ between expressions shown in one graph.
    """
    e, r = f"{tag}_errors", f"{tag}_requests"
    return cw.MathExpression(
        expression=f"IF({r} >= {MIN_REQUESTS_FOR_RATE}, 100 * FILL({e}, 0) / {r}, 0)",
        using_metrics={e: errors, r: requests},
        period=_minutes(minutes),
        label=label,
    )
