"""Every cdk-nag AwsSolutions finding this project accepts, each with the reason.

An acknowledgment names one rule on one construct; wildcard findings
(AwsSolutions-IAM5) are acknowledged resource by resource, so a new wildcard
added later still fails synth.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import aws_cdk as cdk
from aws_cdk import aws_lambda as lambda_
from constructs import IConstruct

if TYPE_CHECKING:
    from stacks.app_builder import ProjectStacks

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
    acknowledge(
        tracking.task_definition,
        "ECS2",
        "Plain environment variables hold only non-secret settings (database host, port and "
        "name, artifact root, worker count, upstream address); both passwords arrive as ECS "
        "secrets from Secrets Manager.",
    )
    acknowledge(
        tracking.load_balancer,
        "ELB2",
        "The ALB is internal and reachable only from the API Gateway VPC link; the HTTP API stage "
        "access-logs every request (source IP, method, path, status, latency), which ALB logs would "
        "only duplicate.",
    )
    acknowledge_wildcards(
        vpc.storage.workflow_access_policy,
        vpc.storage.workflow_object_arns,
        "Studio users and their SageMaker jobs and endpoints use two key prefixes of the artifact "
        "bucket: 'mlflow-*' (MLflow artifacts, model data for endpoints) and 'sagemaker/' "
        "(training job code and output).",
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


def _gateway_stack(stacks: ProjectStacks) -> None:
    acknowledge(
        stacks.gateway.gateway.api,
        "APIG4",
        "Authentication happens in nginx: HTTP basic auth on every path except the exact "
        "/elb-status health path. HTTP APIs have no basic-auth authorizer, and MLflow clients "
        "only speak basic auth or bearer tokens, so the API forwards the Authorization header.",
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
    framework_functions = [build.provider.node.find_child(f"framework-{n}") for n in ("isComplete", "onTimeout")]
    assert all(isinstance(fn, lambda_.Function) for fn in framework_functions)
    acknowledge_wildcards(
        waiter, [f"{fn.function_arn}:*" for fn in framework_functions], invoke_reason  # type: ignore[attr-defined]
    )
    waiter_reason = (
        "The provider's waiter only calls the build-status function every 30 s until the serving image "
        "build ends; that function logs each check and CodeBuild logs the build itself, so state-machine "
        "{what} would add cost without adding information."
    )
    acknowledge(waiter, "SF1", waiter_reason.format(what="execution logs"))
    acknowledge(waiter, "SF2", waiter_reason.format(what="X-Ray traces"))

    role = studio.execution_role
    acknowledge(
        role.policy,
        "IAM5[Resource::*]",
        "List calls (training jobs, models, endpoints, Studio apps and spaces), "
        "ecr:GetAuthorizationToken and cloudwatch:PutMetricData (limited by a namespace condition "
        "to /aws/sagemaker/*) cannot be scoped to resources.",
    )
    acknowledge_wildcards(
        role.policy,
        role.wildcard_resources,
        "Scoped by name: resources the MLflow workflow creates carry the 'mlflow-' prefix or the "
        "'sagemaker/' key prefix, Studio resources are limited to the project's domain, stack "
        "ARNs end in a stack id CloudFormation assigns, and SageMaker's framework images live in "
        "AWS-owned accounts per region.",
    )
