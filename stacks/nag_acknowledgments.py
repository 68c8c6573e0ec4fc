"""Every cdk-nag AwsSolutions finding this project accepts, each with the reason.

An acknowledgment names one rule on one construct; wildcard findings
(AwsSolutions-IAM5) are acknowledged resource by resource, so a new wildcard
added later still fails synth.
"""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_lambda as lambda_
from constructs import IConstruct

from stacks.components.cognito_identity import CognitoIdentity
from stacks.components.model_deployment import ModelDeployment
from stacks.project_stacks import ProjectStacks

RULES = "AwsSolutions::AwsSolutions-"


def acknowledge(construct: IConstruct, rule: str, reason: str) -> None:
    """Accept finding ``rule`` (e.g. ``SMG4`` or ``IAM5[Resource::*]``) on ``construct``."""
    cdk.Validations.of(construct).acknowledge(cdk.Acknowledgment(id=f"{RULES}{rule}", reason=reason))


def acknowledge_wildcards(construct: IConstruct, resources: list[str], reason: str) -> None:
    """Accept IAM5 for exactly these policy resources, rendered the way cdk-nag names them."""
    stack = cdk.Stack.of(construct)
    for resource in resources:
        acknowledge(construct, f"IAM5[Resource::{_nag_name(stack.resolve(resource))}]", reason)


def _nag_name(value: Any) -> str:
    """cdk-nag's text for a resolved value: <AWS::Region>, <Logical.Attr>, joins flattened."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        ((function, argument),) = value.items()
        if function == "Ref":
            return f"<{argument}>"
        if function == "Fn::GetAtt":
            return f"<{argument[0]}.{argument[1]}>"
        if function == "Fn::Join" and argument[0] == "":
            return "".join(_nag_name(part) for part in argument[1])
    return json.dumps(value, separators=(",", ":"))


def acknowledge_findings(stacks: ProjectStacks) -> None:
    _vpc_stack(stacks)
    _gateway_stack(stacks)
    _studio_stack(stacks)


def _vpc_stack(stacks: ProjectStacks) -> None:
    vpc = stacks.vpc
    acknowledge(
        vpc.credentials.secret,
        "SMG4",
        "nginx reads the basic-auth password once when a task starts, so an automatic rotation "
        "would lock clients out of running tasks; `make rotate-password` updates the secret and "
        "forces a new deployment (README, 'Rotating the password').",
    )
    if vpc.session_key is not None:
        acknowledge(
            vpc.session_key.secret,
            "SMG4",
            "The Flask session key is read by every MLflow task when it starts; rotating it while "
            "tasks run would split them into two keys and sign users out. A new deployment of the "
            "stack (or deleting the value and forcing a new ECS deployment) replaces it.",
        )
    if vpc.webhook_key is not None:
        acknowledge(
            vpc.webhook_key.secret,
            "SMG4",
            "MLflow keeps the webhook secrets encrypted with a key derived from this value; a rotation "
            "would leave the stored webhook unreadable (deliveries fail) until it is registered again.",
        )
    if vpc.deployment_login is not None:
        acknowledge(
            vpc.deployment_login.secret,
            "SMG4",
            "Its value is an access token the MLflow tasks issue and renew when they start (a year's "
            "lifetime, renewed with 60 days left); a Secrets Manager rotation would write a password "
            "MLflow never issued, and the deployment functions could not sign in.",
        )
    if isinstance(vpc.identity, CognitoIdentity):
        _cognito(vpc.identity)
    acknowledge(
        vpc.database.secret_resource,
        "SMG4",
        "MLflow reads the database password when a task starts and opens new connections with it; "
        "an automatic rotation would break running tasks until they are replaced.",
    )
    acknowledge(
        vpc.database.cluster,
        "RDS6",
        "MLflow connects with a fixed SQLAlchemy URI and cannot refresh IAM auth tokens, which "
        "expire after 15 minutes; the cluster sits in isolated subnets and admits only the MLflow "
        "tasks' security group.",
    )
    if not vpc.database.deletion_protection:
        acknowledge(
            vpc.database.cluster,
            "RDS10",
            "removal_policy=destroy was chosen explicitly for a throwaway dev deployment, whose "
            "database must go with the stack; the default (retain) turns deletion protection on.",
        )
    tracking = vpc.tracking
    if tracking.container_insights == "disabled":
        acknowledge(
            tracking.cluster,
            "ECS4",
            "Container Insights costs about $11.50 a month for one service (more than the rest of the "
            "monitoring); the cluster's alarm and dashboard read the ALB's free healthy-target metric "
            "and ECS's free CPU and memory metrics instead. `-c container_insights=enabled` turns it on.",
        )
    acknowledge(
        tracking.task_definition,
        "ECS2",
        "Plain environment variables hold only non-secret settings (database host, port and "
        "name, artifact root, worker count, upstream address); both passwords arrive as ECS "
        "secrets from Secrets Manager.",
    )
    if vpc.garbage_collection is not None:
        acknowledge(
            vpc.garbage_collection.task_definition,
            "ECS2",
            "Plain environment variables hold only non-secret settings (database host, port and name, "
            "artifact root, region, how many days deleted runs are kept); the database password "
            "arrives as an ECS secret from Secrets Manager.",
        )
    acknowledge(
        tracking.load_balancer,
        "ELB2",
        "The ALB is internal and reachable only from the API Gateway VPC link; the HTTP API stage "
        "access-logs every request (source IP, method, path, status, latency), which ALB logs would "
        "only duplicate.",
    )
    storage = vpc.storage
    for profile, policies in storage.profiles.items():
        acknowledge_wildcards(
            policies.studio,
            [policies.keys.model_data, policies.keys.job_keys],
            f"Studio profile {profile} writes its own keys only: '<prefix>*/model.tar.gz' (the model data "
            "MLflow's SageMaker deployment uploads for its models) and 'sagemaker/<prefix>*' (its training "
            "jobs' code and output), <prefix> being the profile's; MLflow's own prefix is explicitly denied.",
        )
        acknowledge_wildcards(
            policies.training,
            [policies.keys.job_keys],
            f"Training jobs of Studio profile {profile} read their code and write their output under "
            "'sagemaker/<prefix>*', named per job; MLflow's own prefix is explicitly denied.",
        )
        acknowledge_wildcards(
            policies.serving,
            [policies.keys.model_data],
            f"Models of Studio profile {profile} read only '<prefix>*/model.tar.gz', the model data MLflow's "
            "SageMaker deployment uploads for them; MLflow's own prefix is explicitly denied.",
        )
    if storage.model_deployment_worker_policy and storage.model_deployment_serving_policy:
        acknowledge_wildcards(
            storage.model_deployment_worker_policy,
            [storage.mlflow_artifact_arns, storage.model_copy_arns],
            "The model deployment worker copies a registered version's files (any names MLflow gave them) "
            "from MLflow's prefix to 'model-deployments/<endpoint>-v<version>/', the only keys endpoints may read.",
        )
        acknowledge_wildcards(
            storage.model_deployment_serving_policy,
            [storage.model_copy_arns],
            "Registry endpoints read the copied files of a deployed version under "
            "'model-deployments/<endpoint>-v<version>/', whatever MLflow named them; nothing under MLflow's prefix.",
        )
    acknowledge_wildcards(
        tracking.task_role,
        [tracking.artifact_bucket.arn_for_objects("*")],
        "The task role reads and writes objects anywhere in the artifact bucket, which holds only "
        "MLflow artifacts; MLflow decides the keys (experiment and run ids).",
    )
    execution_role = tracking.task_definition.obtain_execution_role()
    acknowledge(
        execution_role,
        "IAM5[Resource::*]",
        "ecr:GetAuthorizationToken has no resource-level permissions; image pulls themselves are "
        "limited to the CDK asset repository.",
    )
    gate = vpc.upgrade_gate
    acknowledge(
        gate.role,
        "IAM5[Resource::*]",
        "ecs:ListTasks has no resource-level permissions; its condition on ecs:cluster keeps it to the "
        "stack's own ECS cluster, which runs only the MLflow service.",
    )
    acknowledge_wildcards(
        gate.role,
        [gate.snapshot_arns],
        "The upgrade gate names each snapshot it takes after the versions and the time of the upgrade, "
        "so the name is known only then; the prefix keeps it off every other snapshot.",
    )
    acknowledge_wildcards(
        gate.role,
        [gate.service_arns, gate.task_arns],
        "The MLflow service depends on the upgrade gate, so the gate's policy cannot name it; these "
        "cover the services and tasks of the stack's own ECS cluster, which runs only the MLflow service.",
    )

    # aws-cdk-lib's singleton behind the Aurora log group's LogRetention.
    log_retention = next(child for child in vpc.node.children if child.node.id.startswith("LogRetention"))
    acknowledge(
        log_retention,
        "IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
        "aws-cdk-lib's LogRetention function (sets the Aurora log group's retention and deletes it "
        "with the stack under removal_policy=destroy) uses the AWS managed basic execution policy.",
    )
    acknowledge(
        log_retention,
        "IAM5[Resource::*]",
        "aws-cdk-lib's LogRetention function manages a log group whose name RDS derives from the "
        "cluster identifier CloudFormation generates, so its policy cannot name it in advance.",
    )
    if not vpc.database.deletion_protection:
        # Under destroy the function may also delete that one group: its ARN ends in ':*'.
        acknowledge_wildcards(
            log_retention,
            [
                vpc.format_arn(
                    service="logs",
                    resource="log-group",
                    resource_name=f"{vpc.database.log_group_name}:*",
                    arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
                )
            ],
            "Deleting a log group is allowed on the Aurora cluster's own PostgreSQL log group only; "
            "the ':*' suffix is how IAM names a log group's streams.",
        )


def _cognito(identity: CognitoIdentity) -> None:
    pool = identity.user_pool
    acknowledge(
        pool,
        "COG2",
        "MFA is optional so that people who arrive through a federated provider (Google, the company's "
        "SAML or OIDC identity provider) are not asked for a second Cognito factor on top of their "
        "provider's own; the pool's own users can enrol a TOTP app, and an admin can require it "
        "(README, Single sign-on).",
    )
    acknowledge(
        pool,
        "COG8",
        "The Essentials plan (the first 10,000 monthly active users free) instead of Plus, which bills "
        "every active user: Plus adds threat protection for the pool's own passwords, which does not "
        "cover federated sign-ins, where the company's identity provider applies its own risk checks. "
        "Switching the pool to Plus later is a one-line change without losing users.",
    )
    acknowledge(
        identity.client_secret,
        "SMG4",
        "The value is the UI app client's secret, which Cognito generates and CloudFormation copies "
        "here; a Secrets Manager rotation could not change it at Cognito. Replacing the client (a new "
        "deployment with a renamed client) creates a new secret and the tasks read it when they restart.",
    )


def _gateway_stack(stacks: ProjectStacks) -> None:
    acknowledge(
        stacks.gateway.gateway.api,
        "APIG4",
        "Authentication happens behind the API on every path except the exact /elb-status health "
        "path: nginx's basic auth (shared mode), MLflow's auth app (accounts) or its OIDC plugin, "
        "which also runs the browser sign-in (sso). HTTP APIs have no basic-auth authorizer, and "
        "MLflow clients only speak basic auth or bearer tokens, so the API forwards the Authorization header.",
    )

    iam_gateway = stacks.gateway.iam_gateway
    if iam_gateway is not None:
        acknowledge_wildcards(
            iam_gateway.invoke_policy,
            [iam_gateway.invoke_arn],
            "IAM sign-in: the Studio profiles' roles call every route of the one IAM API (MLflow's REST API "
            "under any path and method); MLflow decides what each caller may do.",
        )


def _studio_stack(stacks: ProjectStacks) -> None:
    studio = stacks.studio
    build = studio.image_build
    acknowledge(
        build.project,
        "CB4",
        "The build produces no CodeBuild artifacts: it pushes one image to ECR, which encrypts it "
        "at rest; the build's logs go to CloudWatch Logs.",
    )
    build_role = build.project.role
    assert build_role is not None
    acknowledge(
        build_role,
        "IAM5[Resource::*]",
        "ecr:GetAuthorizationToken (docker login before the push) has no resource-level permissions.",
    )
    acknowledge_wildcards(
        build_role,
        [
            studio.format_arn(
                service="logs",
                resource="log-group",
                resource_name=f"/aws/codebuild/{build.project.project_name}:*",
                arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
            ),
            studio.format_arn(
                service="codebuild", resource="report-group", resource_name=f"{build.project.project_name}-*"
            ),
        ],
        "CodeBuild's default project policy: each build creates log streams and test reports named after the project.",
    )

    # The deploy-time build: aws-cdk-lib's custom-resource provider framework.
    invoke_reason = (
        "aws-cdk-lib's custom-resource provider grants lambda:InvokeFunction on each function it calls "
        "and on its versions (<function ARN>:*); the functions are this construct's own."
    )
    for framework_role in build.framework_roles:
        acknowledge_wildcards(framework_role, [f"{fn.function_arn}:*" for fn in build.handlers], invoke_reason)
    waiter = build.provider.node.find_child("waiter-state-machine")
    framework_functions = []
    for name in ("isComplete", "onTimeout"):
        framework_function = build.provider.node.find_child(f"framework-{name}")
        assert isinstance(framework_function, lambda_.Function)
        framework_functions.append(framework_function)
    acknowledge_wildcards(waiter, [f"{fn.function_arn}:*" for fn in framework_functions], invoke_reason)
    waiter_reason = (
        "The provider's waiter only calls the build-status function every 30 s until the serving image "
        "build ends; that function logs each check and CodeBuild logs the build itself, so state-machine "
        "{what} would add cost without adding information."
    )
    acknowledge(waiter, "SF1", waiter_reason.format(what="execution logs"))
    acknowledge(waiter, "SF2", waiter_reason.format(what="X-Ray traces"))

    for user in studio.users:
        role = user.execution_role
        acknowledge(
            role.policy,
            "IAM5[Resource::*]",
            "List calls (training jobs, models, endpoints, Studio apps and spaces) and "
            "cloudwatch:PutMetricData (limited by a namespace condition to /aws/sagemaker/*) cannot "
            "be scoped to resources.",
        )
        acknowledge_wildcards(
            role.policy,
            role.wildcard_resources,
            "Scoped by name: resources and bucket keys the profile's workflow creates carry its own prefix "
            "('mlflow-<8 hex>-'), "
            "Studio resources are limited to the project's domain, stack ARNs end in a stack id "
            "CloudFormation assigns, and parameters live under /mlflow/.",
        )
        _workload_role(
            user.training_role,
            "training jobs",
            "their log group /aws/sagemaker/TrainingJobs and their profile's job keys (sagemaker/<prefix>*)",
        )
        _workload_role(
            user.serving_role,
            "model endpoints",
            "their log groups /aws/sagemaker/Endpoints/<prefix>* and read their profile's model data (<prefix>*)",
        )
        acknowledge(
            user.launch.policy,
            "IAM5[Resource::*]",
            "The List calls the console makes to find the domain and the profile cannot be scoped to resources.",
        )
        acknowledge_wildcards(
            user.launch.policy,
            user.launch.wildcard_resources,
            "Describing the domain's profiles (read-only) lets the console list them; opening Studio is allowed "
            "for this one profile only.",
        )
        if user.account is not None:
            acknowledge(
                user.account.secret,
                "SMG4",
                "The MLflow user's password lives in MLflow's auth database, set by the account "
                "provisioner from this secret; a rotation here would not reach MLflow. Change it with "
                "MLflow's update-password API and put the same value here (README, accounts mode).",
            )
        if user.oauth_login is not None:
            acknowledge(
                user.oauth_login.secret,
                "SMG4",
                "The value is an OAuth client's secret issued by the identity provider (Cognito generates it "
                "for the profile's app client; an external provider's administrator puts theirs here); a "
                "Secrets Manager rotation could not change it at the provider.",
            )
    _workload_role(
        studio.serving_role, "registry endpoints", "their log groups /aws/sagemaker/Endpoints/mlflow-registry-*"
    )
    if studio.model_deployment is not None:
        _model_deployment(studio.model_deployment)
    if studio.provisioner is not None:
        provisioner = studio.provisioner
        acknowledge(
            provisioner.role,
            "IAM5[Resource::*]",
            "A Lambda function in a VPC creates, describes and deletes its own network interfaces; "
            "EC2 offers no resource scope for describing them, and the interfaces' ids are not "
            "known before the function runs.",
        )
        acknowledge_wildcards(
            provisioner.provider_role,
            [f"{provisioner.function.function_arn}:*"],
            "The CDK custom resource framework invokes the provisioner function and any of its "
            "versions (ARN plus ':*'); it invokes nothing else.",
        )


def _model_deployment(deployment: ModelDeployment) -> None:
    acknowledge(
        deployment.webhook_secret,
        "SMG4",
        "MLflow keeps its own copy of the webhook's HMAC secret, set by the stack when it registers the "
        "webhook; a Secrets Manager rotation would not reach MLflow and every delivery would be refused.",
    )
    for vpc_role in (deployment.worker_role, deployment.registrar_role):
        acknowledge(
            vpc_role,
            "IAM5[Resource::*]",
            "A Lambda function in a VPC creates, describes and deletes its own network interfaces; EC2 offers "
            "no resource scope for describing them, and the interfaces' ids are not known before it runs.",
        )
    acknowledge_wildcards(
        deployment.provider_role,
        [f"{deployment.registrar.function_arn}:*"],
        "The CDK custom resource framework invokes the webhook registrar and any of its versions "
        "(ARN plus ':*'); it invokes nothing else.",
    )
    acknowledge_wildcards(
        deployment.worker_role,
        [*deployment.sagemaker_arns.values(), deployment.alarm_arns],
        "Scoped by name: the worker names each SageMaker model, endpoint config, endpoint and rollback "
        "alarm <mlflow-registry>-<model>...; endpoint configs only on allowed_instance_types (condition).",
    )
    role = deployment.state_machine.role
    acknowledge(
        role,
        "IAM5[Resource::*]",
        "Step Functions' log delivery and X-Ray trace actions have no resource-level permissions.",
    )
    acknowledge_wildcards(
        role,
        [f"{deployment.worker.function_arn}:*"],
        "The state machine invokes the worker function and its versions (ARN plus ':*'); nothing else.",
    )


def _workload_role(construct: Any, what: str, logs: str) -> None:
    """A SageMaker workload role: registry login and metrics are unscopable, the rest is by name."""
    acknowledge(
        construct.policy,
        "IAM5[Resource::*]",
        f"SageMaker {what} need ecr:GetAuthorizationToken (no resource-level permissions) and "
        "cloudwatch:PutMetricData, limited by a namespace condition to /aws/sagemaker/*.",
    )
    acknowledge_wildcards(
        construct.policy,
        construct.wildcard_resources,
        f"Scoped by name: SageMaker {what} write {logs}; framework images live in AWS-owned "
        "accounts per region; stack ARNs end in an id CloudFormation assigns; parameters live under /mlflow/.",
    )
