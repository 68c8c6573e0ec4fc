"""Lets CloudFormation delete the protected Aurora cluster (with its final snapshot) and ALB on `cdk destroy`."""

from aws_cdk import CfnResource, CustomResource, Duration, RemovalPolicy, Stack
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from constructs import Construct

from stacks.components.function_code import inline_code
from stacks.components.lambda_logs import write_own_logs

RESOURCE_TYPE = "Custom::ReleaseDeletionProtection"


class DeletionProtectionRelease(Construct):
    """A custom resource that depends on the cluster, so CloudFormation deletes it first.

    Its function turns the cluster's deletion protection off only when the
    stack itself is being deleted (see the handler), so the cluster stays
    protected against deletion from outside the stack for its whole life,
    and `cdk destroy` still completes: CloudFormation then deletes the
    cluster and keeps the final snapshot its DeletionPolicy asks for.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        cluster: rds.DatabaseCluster,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.log_group = logs.LogGroup(self, "Logs", retention=log_retention, removal_policy=removal_policy)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="Turns off the MLflow database's deletion protection while its stack is deleted",
            inline_policies={
                "ReleaseDeletionProtection": iam.PolicyDocument(
                    statements=[
                        iam.PolicyStatement(
                            sid="ReadOwnStackStatus",
                            actions=["cloudformation:DescribeStacks"],
                            resources=[stack.stack_id],
                        ),
                        iam.PolicyStatement(
                            sid="ModifyTheCluster",
                            actions=["rds:ModifyDBCluster"],
                            resources=[cluster.cluster_arn],
                        ),
                        write_own_logs(self.log_group, sid="WriteOwnLogs"),
                    ]
                )
            },
        )
        self.function = lambda_.Function(
            self,
            "Function",
            runtime=lambda_.Runtime.PYTHON_3_14,
            handler="index.handler",
            code=inline_code("release_deletion_protection"),
            role=self.role,
            log_group=self.log_group,
            timeout=Duration.minutes(1),
            description="MLflow: lets CloudFormation delete the protected Aurora cluster when the stack is deleted",
        )
        self.resource = CustomResource(
            self,
            "Resource",
            service_token=self.function.function_arn,
            resource_type=RESOURCE_TYPE,
            properties={"ClusterIdentifier": cluster.cluster_identifier},
        )
        # CloudFormation deletes dependants first: this resource goes before
        # the cluster (its Ref) and before every instance of the cluster.
        for instance in cluster.node.find_all():
            if isinstance(instance, rds.CfnDBInstance):
                self.resource.node.add_dependency(instance)

    def add_load_balancer(self, load_balancer: elbv2.ApplicationLoadBalancer) -> None:
        """Release the load balancer's deletion protection too, in the same stack deletion."""
        resource = self.resource.node.default_child
        assert isinstance(resource, CfnResource)
        resource.add_property_override("LoadBalancerArn", load_balancer.load_balancer_arn)
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="ModifyTheLoadBalancer",
                actions=["elasticloadbalancing:ModifyLoadBalancerAttributes"],
                resources=[load_balancer.load_balancer_arn],
            )
        )
        # Deleted before the load balancer, like before the cluster.
        self.resource.node.add_dependency(load_balancer)
