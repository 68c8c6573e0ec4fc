"""The SNS topic every alarm and task event goes to: encrypted, TLS only, optional email."""

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk.interfaces.aws_events import IRuleRef
from constructs import Construct

# The services that publish here need the key to encrypt their messages.
_PUBLISHERS = ("cloudwatch.amazonaws.com", "events.amazonaws.com")


class AlarmTopic(Construct):
    """A topic encrypted with its own KMS key, refusing publishes without TLS.

    The AWS managed key for SNS cannot be used: CloudWatch alarms and
    EventBridge cannot encrypt with it, so their messages would be dropped.
    Only CloudWatch alarms of this account named ``alarm_name_prefix*`` and
    the EventBridge rules passed to :meth:`allow_rule` may publish.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        alarm_name_prefix: str,
        email: str | None,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)

        self.key = kms.Key(
            self,
            "Key",
            description="Encrypts the MLflow alarm topic",
            enable_key_rotation=True,
            # The key protects transient notifications only: nothing to keep after the stack.
            removal_policy=RemovalPolicy.DESTROY,
            pending_window=Duration.days(7),
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AlarmPublishersEncrypt",
                principals=[iam.ServicePrincipal(service) for service in _PUBLISHERS],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
            )
        )

        self.topic = sns.Topic(self, "Topic", display_name="MLflow alarms", master_key=self.key, enforce_ssl=True)
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={
                    "StringEquals": {"aws:SourceAccount": stack.account},
                    "ArnLike": {
                        "aws:SourceArn": stack.format_arn(
                            service="cloudwatch",
                            resource="alarm",
                            resource_name=f"{alarm_name_prefix}*",
                            arn_format=ArnFormat.COLON_RESOURCE_NAME,
                        )
                    },
                },
            )
        )
        if email:
            self.topic.add_subscription(subscriptions.EmailSubscription(email))

    def allow_rule(self, rule: IRuleRef) -> None:
        """Let one EventBridge rule publish to the topic."""
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid=f"EventRule{rule.node.id}Publishes",
                principals=[iam.ServicePrincipal("events.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={"ArnEquals": {"aws:SourceArn": rule.rule_ref.rule_arn}},
            )
        )
