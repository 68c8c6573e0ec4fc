"""Registry aliases that deploy: MLflow's webhook starts a SageMaker endpoint deployment.

The receiver is a Lambda function URL with no AWS auth: MLflow's webhook
delivery cannot sign requests with SigV4, so the HMAC signature over each
delivery (secret generated here, read at run time) is what authenticates it,
and deliveries older than five minutes are refused. A route on the project's
HTTP API would be just as public and would share its throttling and access
log with MLflow itself; the function URL keeps the receiver out of the
request path and out of the VPC (it needs only Secrets Manager and Step
Functions). The worker runs in the VPC: it reads the version's artifact
location from MLflow and tags the outcome back, through the internal load
balancer. A Step Functions state machine runs the worker, waits for the
endpoint to settle and fails (alarm to the alarm topic) when it does not serve
the new version. A custom resource registers the webhook in MLflow (with the
functions' login, ``mlflow_secret``: the server login, or in sso mode the
VPC stack's DeploymentLogin; through the load balancer) with the secret and
the receiver's URL. Handlers: stacks/functions/model_deployment/.
"""

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aws_cdk import ArnFormat, CustomResource, Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from stacks import names
from stacks.alarm_thresholds import ALARM_NAME_PREFIX
from stacks.components.internal_mlflow import InternalMlflow
from stacks.components.lambda_logs import provider_invoking, write_own_logs
from stacks.components.vpc_functions import mlflow_client_security_group, vpc_function_role
from stacks.config.identity import ModelDeployment as DeploymentSetting

# The asset is stacks/ with only the two handler folders: the worker imports the
# MLflow client of functions/mlflow_accounts as a sibling package.
STACKS_DIR = Path(__file__).resolve().parents[1]
HANDLER_FOLDERS = ("functions/model_deployment", "functions/mlflow_accounts")
ASSET_EXCLUDE = ["*", "!functions", *(f"!{folder}" for folder in HANDLER_FOLDERS)]
ASSET_EXCLUDE += [f"!{folder}/*.py" for folder in HANDLER_FOLDERS]
HANDLER_MODULE = "functions.model_deployment"
# Blue/green with a 5-minute bake and 5-minute termination wait, after a first
# creation of up to ~20 minutes: two hours is far beyond any healthy run.
EXECUTION_TIMEOUT = Duration.hours(2)
POLL_INTERVAL = Duration.minutes(1)
FAILURES_ALARM_NAME = f"{ALARM_NAME_PREFIX}model-deployment-failures"
# The webhook's name in MLflow (Admin > Webhooks in the UI).
WEBHOOK_NAME = "sagemaker-model-deployment"
WEBHOOK_RESOURCE_TYPE = "Custom::MlflowWebhook"


class ModelDeployment(Construct):
    """Webhook secret, receiver (function URL), worker (in the VPC), state machine and failure alarm.

    Exposes ``webhook_secret``, ``receiver`` and ``receiver_url``, ``worker``
    and its ``worker_role`` (SageMaker only on names starting with
    ``names.MODEL_DEPLOYMENT_PREFIX``, endpoint configs only on
    ``allowed_instance_types``, PassRole only of ``endpoint_role``),
    ``state_machine``, ``failures_alarm``, and the ``webhook`` custom resource
    with its ``registrar`` function, ``registrar_role`` and ``provider_role``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        deployments: Sequence[DeploymentSetting],
        allowed_instance_types: Sequence[str],
        mlflow: InternalMlflow,
        mlflow_secret: secretsmanager.ISecret,
        endpoint_role: iam.IRole,
        serving_image_uri: str,
        artifact_bucket: s3.IBucket,
        worker_copies_policy: iam.IManagedPolicy,
        serving_copies_policy: iam.IManagedPolicy,
        alarm_topic: sns.ITopic,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        prefix = names.MODEL_DEPLOYMENT_PREFIX
        code = lambda_.Code.from_asset(str(STACKS_DIR), exclude=ASSET_EXCLUDE)

        self.webhook_secret = secretsmanager.Secret(
            self,
            "WebhookSecret",
            description="HMAC secret MLflow signs model deployment webhooks with",
            generate_secret_string=secretsmanager.SecretStringGenerator(password_length=48, exclude_punctuation=True),
            removal_policy=removal_policy,
        )

        # --- the worker, in the VPC -------------------------------------------------
        self.security_group = mlflow_client_security_group(
            self,
            "WorkerSecurityGroup",
            mlflow=mlflow,
            description="Model deployment worker: the MLflow ALB and AWS APIs",
            rule_description="Model deployment worker to the MLflow ALB",
        )
        mlflow_environment = {
            "MLFLOW_SECRET_ARN": mlflow_secret.secret_arn,
            **mlflow.client_environment(),
        }
        worker_logs = logs.LogGroup(self, "WorkerLogs", retention=log_retention, removal_policy=removal_policy)

        def sagemaker_arn(resource: str) -> str:
            return stack.format_arn(service="sagemaker", resource=resource, resource_name=names.MODEL_DEPLOYMENT_NAMES)

        self.sagemaker_arns = {kind: sagemaker_arn(kind) for kind in names.MODEL_DEPLOYMENT_RESOURCE_TYPES}
        # The version's files are copied out of MLflow's prefix for the endpoint (policies beside the bucket).
        endpoint_role.add_managed_policy(serving_copies_policy)
        self.alarm_arns = stack.format_arn(
            service="cloudwatch",
            resource="alarm",
            resource_name=names.MODEL_DEPLOYMENT_NAMES,
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        self.worker_role = vpc_function_role(
            self,
            "WorkerRole",
            description="Model deployment worker: SageMaker models and endpoints of the registry, its logs",
            policy_name="Worker",
            log_group=worker_logs,
            statements=[
                iam.PolicyStatement(
                    sid="ReadMlflowLogin",
                    actions=["secretsmanager:GetSecretValue"],
                    resources=[mlflow_secret.secret_arn],
                ),
                iam.PolicyStatement(
                    sid="CreateModels",
                    actions=["sagemaker:CreateModel"],
                    resources=[self.sagemaker_arns["model"]],
                ),
                iam.PolicyStatement(
                    sid="CreateEndpointConfigsOnAllowedInstanceTypes",
                    actions=["sagemaker:CreateEndpointConfig"],
                    resources=[self.sagemaker_arns["endpoint-config"]],
                    conditions={
                        "ForAllValues:StringEquals": {"sagemaker:InstanceTypes": list(allowed_instance_types)},
                        "Null": {"sagemaker:InstanceTypes": "false"},
                    },
                ),
                iam.PolicyStatement(
                    sid="CreateAndUpdateEndpoints",
                    # Never DeleteEndpoint: removing an alias or a setting leaves the endpoint.
                    actions=[
                        "sagemaker:CreateEndpoint",
                        "sagemaker:UpdateEndpoint",
                        "sagemaker:DescribeEndpoint",
                    ],
                    resources=[self.sagemaker_arns["endpoint"], self.sagemaker_arns["endpoint-config"]],
                ),
                iam.PolicyStatement(
                    sid="PassTheEndpointRole",
                    actions=["iam:PassRole"],
                    resources=[endpoint_role.role_arn],
                    conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
                ),
                iam.PolicyStatement(
                    sid="RollbackAlarmsOfTheNewVariant",
                    actions=["cloudwatch:PutMetricAlarm", "cloudwatch:DescribeAlarms"],
                    resources=[self.alarm_arns],
                ),
            ],
        )

        def in_vpc(construct_id: str, handler: str, **options: Any) -> lambda_.Function:
            """A function of the handlers' asset in the private subnets, reaching MLflow (the worker's group)."""
            return lambda_.Function(
                self,
                construct_id,
                runtime=lambda_.Runtime.PYTHON_3_14,
                handler=f"{HANDLER_MODULE}.{handler}",
                code=code,
                vpc=mlflow.vpc,
                vpc_subnets=mlflow.subnets,
                security_groups=[self.security_group],
                # Long enough to wait out an MLflow task restart behind the ALB.
                timeout=Duration.minutes(3),
                memory_size=256,
                **options,
            )

        self.worker_role.add_managed_policy(worker_copies_policy)
        self.worker = in_vpc(
            "Worker",
            "index.handler",
            description="Deploys a registered model version to its SageMaker endpoint (blue/green, auto-rollback)",
            role=self.worker_role,
            environment={
                **mlflow_environment,
                "SERVING_IMAGE_URI": serving_image_uri,
                "ENDPOINT_ROLE_ARN": endpoint_role.role_arn,
                "ARTIFACT_S3_ROOT": artifact_bucket.s3_url_for_object(names.ARTIFACT_PREFIX),
                "MODEL_DATA_S3_ROOT": artifact_bucket.s3_url_for_object(names.MODEL_COPY_PREFIX),
                "ENDPOINT_PREFIX": prefix,
                "ALLOWED_INSTANCE_TYPES": json.dumps(list(allowed_instance_types)),
                "ALARM_ACTIONS": stack.to_json_string([alarm_topic.topic_arn]),
            },
            log_group=worker_logs,
        )

        # --- the state machine: deploy (or wait its turn), then poll until the endpoint settles
        machine_logs = logs.LogGroup(self, "StateMachineLogs", retention=log_retention, removal_policy=removal_policy)
        deploy = tasks.LambdaInvoke(self, "Deploy", lambda_function=self.worker, payload_response_only=True)
        wait = sfn.Wait(self, "WaitForEndpoint", time=sfn.WaitTime.duration(POLL_INTERVAL))
        check = tasks.LambdaInvoke(self, "CheckEndpoint", lambda_function=self.worker, payload_response_only=True)
        settled = (
            sfn.Choice(self, "Settled")
            .when(sfn.Condition.string_equals("$.status", "pending"), wait)
            .when(sfn.Condition.string_equals("$.status", "deployed"), sfn.Succeed(self, "Deployed"))
            .otherwise(
                sfn.Fail(
                    self,
                    "DeploymentFailed",
                    error="DeploymentFailed",
                    cause="The endpoint does not serve the new version (rolled back or failed); see the worker's logs",
                )
            )
        )
        wait.next(check).next(settled)
        # The worker starts nothing while the endpoint is busy with the release before (deploy again
        # after a wait) or when the alias names another version now (done: that move deploys).
        # The statuses are the worker's (functions/model_deployment/index.py; pinned by a test).
        started = (
            sfn.Choice(self, "Started")
            .when(
                sfn.Condition.string_equals("$.status", "waiting"),
                sfn.Wait(self, "WaitForPreviousRelease", time=sfn.WaitTime.duration(POLL_INTERVAL)).next(deploy),
            )
            .when(sfn.Condition.string_equals("$.status", "superseded"), sfn.Succeed(self, "Superseded"))
            .otherwise(wait)
        )
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            definition_body=sfn.DefinitionBody.from_chainable(deploy.next(started)),
            timeout=EXECUTION_TIMEOUT,
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=machine_logs, level=sfn.LogLevel.ALL),
        )

        # --- the receiver: function URL, HMAC is the only auth ----------------------
        receiver_logs = logs.LogGroup(self, "ReceiverLogs", retention=log_retention, removal_policy=removal_policy)
        self.receiver_role = iam.Role(
            self,
            "ReceiverRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="Model deployment webhook receiver: its secret, start the deployment state machine",
            inline_policies={
                "Receiver": iam.PolicyDocument(
                    statements=[
                        write_own_logs(receiver_logs, sid="WriteOwnLogs"),
                        iam.PolicyStatement(
                            sid="ReadWebhookSecret",
                            actions=["secretsmanager:GetSecretValue"],
                            resources=[self.webhook_secret.secret_arn],
                        ),
                        iam.PolicyStatement(
                            sid="StartDeployments",
                            actions=["states:StartExecution"],
                            resources=[self.state_machine.state_machine_arn],
                        ),
                    ]
                )
            },
        )
        self.receiver = lambda_.Function(
            self,
            "Receiver",
            runtime=lambda_.Runtime.PYTHON_3_14,
            handler=f"{HANDLER_MODULE}.receiver.handler",
            code=code,
            description="MLflow registry webhook: verifies the HMAC signature, starts a model deployment",
            role=self.receiver_role,
            environment={
                "WEBHOOK_SECRET_ARN": self.webhook_secret.secret_arn,
                "STATE_MACHINE_ARN": self.state_machine.state_machine_arn,
                "DEPLOYMENTS": json.dumps([deployment.model_dump() for deployment in deployments]),
            },
            timeout=Duration.seconds(15),
            memory_size=128,
            log_group=receiver_logs,
        )
        self.receiver_url = self.receiver.add_function_url(auth_type=lambda_.FunctionUrlAuthType.NONE)

        # --- failures reach the alarm topic -----------------------------------------
        period = Duration.minutes(5)
        self.failures_alarm = cloudwatch.Alarm(
            self,
            "FailuresAlarm",
            alarm_name=FAILURES_ALARM_NAME,
            alarm_description="A model deployment failed, timed out, or a webhook delivery could not start one",
            metric=cloudwatch.MathExpression(
                expression="FILL(failed, 0) + FILL(timedout, 0) + FILL(receiver, 0)",
                using_metrics={
                    "failed": self.state_machine.metric_failed(period=period, statistic="Sum"),
                    "timedout": self.state_machine.metric_timed_out(period=period, statistic="Sum"),
                    "receiver": self.receiver.metric_errors(period=period, statistic="Sum"),
                },
                period=period,
            ),
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.failures_alarm.add_alarm_action(cloudwatch_actions.SnsAction(alarm_topic))

        # --- the webhook in MLflow, registered on deploy ------------------------------
        registrar_logs = logs.LogGroup(self, "RegistrarLogs", retention=log_retention, removal_policy=removal_policy)
        self.registrar_role = vpc_function_role(
            self,
            "RegistrarRole",
            description="Registers the model deployment webhook in MLflow: server login, webhook secret",
            policy_name="Registrar",
            log_group=registrar_logs,
            statements=[
                iam.PolicyStatement(
                    sid="ReadMlflowLoginAndWebhookSecret",
                    actions=["secretsmanager:GetSecretValue"],
                    resources=[mlflow_secret.secret_arn, self.webhook_secret.secret_arn],
                ),
            ],
        )
        self.registrar = in_vpc(
            "Registrar",
            "webhook.on_event",
            description="Creates, updates and deletes MLflow's model deployment webhook",
            role=self.registrar_role,
            environment=mlflow_environment,
            log_group=registrar_logs,
        )
        provider_logs = logs.LogGroup(self, "ProviderLogs", retention=log_retention, removal_policy=removal_policy)
        self.provider, self.provider_role = provider_invoking(
            self,
            function=self.registrar,
            log_group=provider_logs,
            description="CloudFormation custom resource framework for the MLflow webhook: invoke the registrar",
        )
        self.webhook = CustomResource(
            self,
            "Webhook",
            service_token=self.provider.service_token,
            resource_type=WEBHOOK_RESOURCE_TYPE,
            properties={
                "Name": WEBHOOK_NAME,
                "Url": self.receiver_url.url,
                "WebhookSecretArn": self.webhook_secret.secret_arn,
            },
        )
        # The registrar must reach the ALB (security group rules) before it runs.
        self.webhook.node.add_dependency(self.security_group)
