"""ECS events worth a message: tasks that stop unexpectedly and rollouts the circuit breaker fails."""

import jsii
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_events as events
from aws_cdk.interfaces.aws_events import IRuleRef
from constructs import Construct

from stacks.components.alarm_topic import AlarmTopic

# ECS gives this reason when it stops a task on purpose: a deployment replacing
# it, or a scale-in. Every other stop (a crashed or out-of-memory container, a
# failed health check, a task that never started) is unexpected.
PLANNED_STOP_REASON_PREFIX = "Scaling activity initiated by"


@jsii.implements(events.IRuleTarget)
class _TopicMessage:
    """Publish a readable message to the alarm topic (the topic's policy admits the rule)."""

    def __init__(self, topic: AlarmTopic, message: events.RuleTargetInput) -> None:
        self._topic = topic
        self._message = message

    def bind(self, rule: IRuleRef, id: str | None = None) -> events.RuleTargetConfig:  # noqa: A002, ARG002 - IRuleTarget.bind
        self._topic.allow_rule(rule)
        return events.RuleTargetConfig(arn=self._topic.topic.topic_arn, input=self._message)


def _field(path: str) -> str:
    return events.EventField.from_path(path)


class TaskEvents(Construct):
    """Two EventBridge rules on the default bus, both sending to the alarm topic.

    ``stop_rule`` matches each task of the MLflow service that stops for any
    reason but a planned one; its ``TriggeredRules`` metric counts them for
    the restart alarm. ``deployment_rule`` matches a rollout that ECS's
    circuit breaker marked failed (and rolled back).
    """

    def __init__(self, scope: Construct, construct_id: str, *, service: ecs.FargateService, topic: AlarmTopic) -> None:
        super().__init__(scope, construct_id)

        self.stop_rule = events.Rule(
            self,
            "UnexpectedTaskStops",
            description="An MLflow task stopped for a reason other than a deployment or scale-in",
            event_pattern=events.EventPattern(
                source=["aws.ecs"],
                detail_type=["ECS Task State Change"],
                detail={
                    "clusterArn": [service.cluster.cluster_arn],
                    "group": [f"service:{service.service_name}"],
                    "lastStatus": ["STOPPED"],
                    "stoppedReason": events.Match.anything_but_prefix(PLANNED_STOP_REASON_PREFIX),
                },
            ),
        )
        self.stop_rule.add_target(
            _TopicMessage(
                topic,
                events.RuleTargetInput.from_text(
                    f"MLflow task stopped unexpectedly: {_field('$.detail.stoppedReason')} "
                    f"(stop code {_field('$.detail.stopCode')}, task {_field('$.detail.taskArn')})"
                ),
            )
        )

        self.deployment_rule = events.Rule(
            self,
            "FailedDeployments",
            description="An MLflow service rollout failed and the circuit breaker rolled it back",
            event_pattern=events.EventPattern(
                source=["aws.ecs"],
                detail_type=["ECS Deployment State Change"],
                resources=[service.service_arn],
                detail={"eventName": ["SERVICE_DEPLOYMENT_FAILED"]},
            ),
        )
        self.deployment_rule.add_target(
            _TopicMessage(
                topic,
                events.RuleTargetInput.from_text(
                    f"MLflow rollout {_field('$.detail.deploymentId')} failed: {_field('$.detail.reason')}"
                ),
            )
        )
