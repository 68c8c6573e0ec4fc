"""Builds the four stacks and wires cross-stack values as constructor arguments."""

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from stacks import names
from stacks.components.cognito_identity import CognitoIdentity
from stacks.components.function_logs import own_function_log_groups
from stacks.config import ProjectConfig
from stacks.http_gateway_stack import HttpGatewayStack
from stacks.mlflow_monitoring_stack import MLflowMonitoringStack
from stacks.mlflow_vpc_stack import MLflowVpcStack
from stacks.nag_acknowledgments import acknowledge_findings
from stacks.project_stacks import ProjectStacks
from stacks.sagemaker_studio_user_stack import SageMakerStudioUserStack


def build_stacks(app: cdk.App, config: ProjectConfig) -> ProjectStacks:
    """Create the stacks; cdk-nag AwsSolutions checks run as a validation plugin at synth."""
    description = "MLflow tracking server and model registry on AWS"
    vpc = MLflowVpcStack(app, names.VPC_STACK, config=config, description=f"{description}: VPC, data, service")
    gateway = HttpGatewayStack(
        app,
        names.GATEWAY_STACK,
        config=config,
        vpc=vpc.vpc,
        subnets=vpc.private_subnets,
        listener=vpc.listener,
        load_balancer=vpc.load_balancer,
        load_balancer_port=vpc.load_balancer_port,
        artifact_bucket=vpc.artifact_bucket,
        certificate=vpc.certificate,
        identity=vpc.identity if isinstance(vpc.identity, CognitoIdentity) else None,
        iam_listener=vpc.iam_listener,
        iam_listener_port=vpc.iam_listener_port,
        description=f"{description}: HTTPS API",
    )
    monitoring = MLflowMonitoringStack(
        app,
        names.MONITORING_STACK,
        config=config,
        api_stage=gateway.stage,
        load_balancer=vpc.load_balancer,
        target_group=vpc.tracking.target_group,
        service=vpc.tracking.service,
        database=vpc.database.cluster,
        artifact_bucket=vpc.artifact_bucket,
        request_metrics_filter_id=vpc.storage.request_metrics_filter_id,
        iam_api_stage=gateway.iam_gateway.stage if gateway.iam_gateway else None,
        iam_target_group=vpc.tracking.iam_target_group,
        description=f"{description}: alarms and dashboard",
    )
    studio = SageMakerStudioUserStack(
        app,
        names.STUDIO_STACK,
        config=config,
        mlflow=vpc.internal_mlflow,
        credentials_secret=vpc.credentials_secret,
        deployment_login_secret=vpc.deployment_login_secret,
        profile_storage=vpc.storage.profiles,
        serving_access_policy=vpc.storage.serving_access_policy,
        # The Studio stack's own outputs too: the notebook reads whether alias moves deploy.
        output_stack_names=[names.VPC_STACK, names.GATEWAY_STACK, names.STUDIO_STACK],
        artifact_bucket=vpc.artifact_bucket,
        alarm_topic=monitoring.alarm_topic.topic,
        model_deployment_policies=(
            (vpc.storage.model_deployment_worker_policy, vpc.storage.model_deployment_serving_policy)
            if vpc.storage.model_deployment_worker_policy and vpc.storage.model_deployment_serving_policy
            else None
        ),
        machine_clients=vpc.machine_clients,
        iam_invoke_policy=gateway.iam_gateway.invoke_policy if gateway.iam_gateway else None,
        description=f"{description}: SageMaker Studio users",
    )
    # The profile is only useful once the tracking URL exists.
    studio.add_stack_dependency(gateway)

    stacks = ProjectStacks(vpc=vpc, gateway=gateway, monitoring=monitoring, studio=studio)
    # Last, so every Lambda function any construct added is covered, in every stack.
    for stack in (child for child in app.node.children if isinstance(child, cdk.Stack)):
        own_function_log_groups(
            stack, retention=config.operations.log_retention, removal_policy=config.operations.cdk_removal_policy
        )

    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    acknowledge_findings(stacks)
    return stacks
