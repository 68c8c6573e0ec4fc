"""What the stack hands TrackingService: typed, frozen, checked where it is built."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from aws_cdk import RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager

from stacks.auth_modes import MODES, AuthMode
from stacks.components.domain_certificate import DomainCertificate
from stacks.config.service import TaskArchitecture


@dataclass(frozen=True, kw_only=True)
class OidcSettings:
    """What the MLflow container needs in a mode with a sign-in provider (the OIDC plugin's settings)."""

    discovery_url: str
    # JSON fields client_id and client_secret: the UI's client at the provider.
    client_secret: secretsmanager.ISecret
    admin_group: str
    allowed_group: str | None
    # The claim the provider lists groups in (Cognito: cognito:groups), when not the usual "groups".
    groups_claim: str | None = None
    # App client ids whose client-credentials tokens act as MLflow users of that name (Studio profiles).
    machine_clients: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class IamSignInSettings:
    """IAM sign-in (iam_callers.py): the callers the setting maps, and where the Studio profiles' are."""

    # Role or user ARN -> MLflow user (the iam_principals setting: CI pipelines).
    principals: Mapping[str, str]
    # SSM path with one parameter per Studio profile, which the server reads by path.
    principals_path: str


@dataclass(frozen=True, kw_only=True)
class DatabaseEndpoint:
    """The metadata database as the tasks reach it."""

    connectable: ec2.IConnectable  # its security group admits the tasks
    secret: secretsmanager.ISecret  # JSON fields username and password
    host: str
    port: int
    name: str


@dataclass(frozen=True, kw_only=True)
class AuthSettings:
    """Who checks credentials, and what the mode's row of the mode table asks for.

    ``server_credentials`` is nginx's one user or MLflow's admin, as the mode
    says; ``session_key`` signs MLflow's sessions where the mode has them;
    ``oidc`` is the provider of a mode with sign-in; ``iam`` turns on IAM sign-in.
    """

    mode: AuthMode
    default_permission: str
    server_credentials: secretsmanager.ISecret
    session_key: secretsmanager.ISecret | None = None
    oidc: OidcSettings | None = None
    iam: IamSignInSettings | None = None

    def __post_init__(self) -> None:
        needs = MODES[self.mode]
        if self.iam is not None and not needs.iam_sign_in:
            raise ValueError(f"{self.mode} mode has no IAM sign-in")
        if needs.session_key and self.session_key is None:
            raise ValueError(f"{self.mode} mode needs a session key secret")
        if needs.sign_in_provider and self.oidc is None:
            raise ValueError(f"{self.mode} mode needs the OIDC provider's settings")


@dataclass(frozen=True, kw_only=True)
class ServiceSize:
    """The task's size and how many of them run."""

    cpu: int
    memory_mib: int
    workers: int  # MLflow's uvicorn workers per task
    desired_count: int
    min_count: int
    max_count: int
    cpu_target_percent: int  # scale out above this average CPU
    on_demand_count: int  # the first tasks, on regular Fargate; the ones beyond run on Fargate Spot

    @property
    def uses_spot(self) -> bool:
        """Whether any task can run on Fargate Spot."""
        return self.on_demand_count < self.max_count


@dataclass(frozen=True, kw_only=True)
class TrackingServiceProps:
    """Everything TrackingService is built from.

    With ``domain_certificate`` the ALB listens with HTTPS on that certificate
    and MLflow is told its public domain. ``ai_gateway`` turns on MLflow's AI
    gateway (``MLFLOW_ENABLE_AI_GATEWAY``), off otherwise.
    """

    vpc: ec2.IVpc
    subnets: ec2.SubnetSelection
    artifact_bucket: s3.IBucket
    database: DatabaseEndpoint
    auth: AuthSettings
    size: ServiceSize
    log_retention: logs.RetentionDays
    audit_log_retention: logs.RetentionDays  # the audit log group's, kept apart and longer
    removal_policy: RemovalPolicy
    domain_certificate: DomainCertificate | None = None
    ai_gateway: bool = False
    # model_deployments: every task derives the key MLflow encrypts webhook secrets with from it.
    webhook_key: secretsmanager.ISecret | None = None
    # model_deployments in sso mode: the deployment functions' login, which the tasks issue into (DeploymentLogin).
    deployment_login: secretsmanager.ISecret | None = None
    container_insights: Literal["disabled", "enabled", "enhanced"] = "disabled"
    architecture: TaskArchitecture = "x86_64"  # the task's platform, and the one its images are built for
