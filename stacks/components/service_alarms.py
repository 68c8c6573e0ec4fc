"""One CloudWatch alarm per rule in stacks/alarm_thresholds.py, all notifying the alarm topic."""

from collections.abc import Callable

from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_sns as sns
from constructs import Construct

from stacks.alarm_thresholds import ALARMS, IAM_SIGN_IN_ALARMS, AlarmRule
from stacks.components.service_metrics import ServiceMetrics

_COMPARISONS = {
    ">": cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
    ">=": cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
}


def _metric_for(metrics: ServiceMetrics) -> dict[str, Callable[[int], cw.IMetric]]:
    """Rule key -> the metric it watches, at a given period (minutes)."""
    return {
        "api-5xx-rate": metrics.api_5xx_rate,
        "api-latency-p95": lambda minutes: metrics.api_latency("p95", minutes),
        "alb-unhealthy-targets": metrics.unhealthy_targets,
        "tasks-below-desired": metrics.tasks_missing,
        "task-restarts": metrics.unexpected_task_stops,
        "aurora-capacity-at-max": metrics.aurora_capacity,
        "aurora-cpu": metrics.aurora_cpu,
        "aurora-connections": metrics.aurora_connections,
        "artifacts-5xx-rate": lambda minutes: metrics.bucket_error_rate("5xx", minutes),
        "artifacts-4xx-rate": lambda minutes: metrics.bucket_error_rate("4xx", minutes),
    }


class ServiceAlarms(Construct):
    """The alarms along the request path; each sends ALARM and OK to the topic.

    ``limits`` holds the values relative thresholds scale: ``aurora_max_acu``
    and ``max_connections``. ``iam_metrics`` (IAM sign-in's entry point, see
    ``ServiceMetrics.entry_point``) adds the twins in ``IAM_SIGN_IN_ALARMS``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        metrics: ServiceMetrics,
        topic: sns.ITopic,
        limits: dict[str, float],
        iam_metrics: ServiceMetrics | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        factories = _metric_for(metrics)
        missing = {rule.key for rule in ALARMS} ^ set(factories)
        if missing:  # pragma: no cover - a rule without a metric is a programming error
            raise RuntimeError(f"alarm rules and metrics differ: {sorted(missing)}")

        watched = [(rule, factories) for rule in ALARMS]
        if iam_metrics is not None:
            iam_factories = _metric_for(iam_metrics)
            watched += [(rule, iam_factories) for rule in IAM_SIGN_IN_ALARMS]
        action = cw_actions.SnsAction(topic)
        self.alarms: dict[str, cw.Alarm] = {}
        for rule, metric_for in watched:
            alarm = self._alarm(rule, metric_for[rule.metric_key](rule.period_minutes), limits)
            alarm.add_alarm_action(action)
            alarm.add_ok_action(action)
            self.alarms[rule.key] = alarm

    def _alarm(self, rule: AlarmRule, metric: cw.IMetric, limits: dict[str, float]) -> cw.Alarm:
        limit = limits[rule.relative_to] if rule.relative_to else None
        threshold = rule.absolute_threshold(limit)
        return cw.Alarm(
            self,
            rule.key,
            alarm_name=rule.alarm_name,
            alarm_description=f"{rule.watches} {rule.describe_threshold()}"
            + (f" (= {threshold:g})" if rule.relative_to else "")
            + f". {rule.reason}",
            metric=metric,
            threshold=threshold,
            comparison_operator=_COMPARISONS[rule.comparison],
            evaluation_periods=rule.evaluation_periods,
            datapoints_to_alarm=rule.datapoints_to_alarm,
            treat_missing_data=(
                cw.TreatMissingData.BREACHING if rule.missing_data_breaches else cw.TreatMissingData.NOT_BREACHING
            ),
        )
