"""MLflowMonitoringStack: alarms, their SNS topic, ECS event notifications and the dashboard.

A stack of its own because it watches both other stacks: the HTTP API lives
in HttpGatewayStack, which already depends on MLflowVpcStack, so alarms on
the API inside MLflowVpcStack would make the two depend on each other.
Separate, thresholds can also change without touching the stacks that hold
data or serve requests.
"""

from typing import Any

from aws_cdk import Aws, CfnOutput, Stack
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_rds as rds
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks import names
from stacks.alarm_thresholds import ALARM_NAME_PREFIX, aurora_postgres_max_connections
from stacks.components.alarm_topic import AlarmTopic
from stacks.components.service_alarms import ServiceAlarms
from stacks.components.service_dashboard import ServiceDashboard
from stacks.components.service_metrics import ServiceMetrics
from stacks.components.task_events import TaskEvents
from stacks.config import ProjectConfig


class MLflowMonitoringStack(Stack):
    """Watches the request path end to end and tells the alarm topic's subscribers.

    ``iam_api_stage`` and ``iam_target_group`` (IAM sign-in on) are the second way in:
    their alarms are the password path's twins, and the dashboard shows them too.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: ProjectConfig,
        api_stage: apigw.HttpStage,
        load_balancer: elbv2.ApplicationLoadBalancer,
        target_group: elbv2.ApplicationTargetGroup,
        service: ecs.FargateService,
        database: rds.DatabaseCluster,
        artifact_bucket: s3.IBucket,
        request_metrics_filter_id: str,
        iam_api_stage: apigw.HttpStage | None = None,
        iam_target_group: elbv2.ApplicationTargetGroup | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.max_connections = aurora_postgres_max_connections(
            config.database.aurora_min_acu, config.database.aurora_max_acu
        )

        self.alarm_topic = AlarmTopic(
            self, "AlarmTopic", alarm_name_prefix=ALARM_NAME_PREFIX, email=config.operations.alarm_email
        )
        self.task_events = TaskEvents(self, "TaskEvents", service=service, topic=self.alarm_topic)
        metrics = ServiceMetrics(
            api_stage=api_stage,
            load_balancer=load_balancer,
            target_group=target_group,
            service=service,
            task_stop_rule=self.task_events.stop_rule,
            database=database,
            bucket=artifact_bucket,
            request_metrics_filter_id=request_metrics_filter_id,
            min_tasks=config.service.min_task_count,
            container_insights=config.service.container_insights != "disabled",
        )
        iam_metrics = (
            metrics.entry_point(api_stage=iam_api_stage, target_group=iam_target_group)
            if iam_api_stage is not None and iam_target_group is not None
            else None
        )
        self.alarms = ServiceAlarms(
            self,
            "Alarms",
            metrics=metrics,
            topic=self.alarm_topic.topic,
            limits={"aurora_max_acu": config.database.aurora_max_acu, "max_connections": self.max_connections},
            iam_metrics=iam_metrics,
        )
        self.dashboard = ServiceDashboard(
            self,
            "Dashboard",
            dashboard_name=names.DASHBOARD_NAME,
            metrics=metrics,
            alarms=list(self.alarms.alarms.values()),
            aurora_max_acu=config.database.aurora_max_acu,
            max_connections=self.max_connections,
            iam_metrics=iam_metrics,
        )

        topic_arn = self.alarm_topic.topic.topic_arn
        CfnOutput(
            self, names.OUTPUT_ALARM_TOPIC, value=topic_arn, description="SNS topic of the alarms"
        ).override_logical_id(names.OUTPUT_ALARM_TOPIC)
        CfnOutput(
            self,
            names.OUTPUT_DASHBOARD_URL,
            value=f"https://console.aws.amazon.com/cloudwatch/home?region={Aws.REGION}"
            f"#dashboards:name={names.DASHBOARD_NAME}",
            description="CloudWatch dashboard of the request path",
        ).override_logical_id(names.OUTPUT_DASHBOARD_URL)
