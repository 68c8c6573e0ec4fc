"""How code inside the VPC reaches MLflow without API Gateway: the internal ALB's listener."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticloadbalancingv2 as elbv2


@dataclass(frozen=True, kw_only=True)
class InternalMlflow:
    """The VPC stack's answer to "where is MLflow?" for functions in the private subnets.

    With HTTPS the ALB's own DNS name is not on the certificate, so a client verifies the
    certificate against ``server_name`` (and sends it as SNI).
    """

    vpc: ec2.IVpc
    subnets: ec2.SubnetSelection
    load_balancer: elbv2.IApplicationLoadBalancer
    port: int
    scheme: str
    server_name: str | None

    def client_environment(self) -> dict[str, str]:
        """What the functions' MLflow client reads (stacks/functions/mlflow_accounts)."""
        url = {"MLFLOW_URL": f"{self.scheme}://{self.load_balancer.load_balancer_dns_name}"}
        return url | ({"MLFLOW_TLS_SERVER_NAME": self.server_name} if self.server_name else {})
