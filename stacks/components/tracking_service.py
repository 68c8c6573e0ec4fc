"""The MLflow tracking server: one Fargate task (nginx + mlflow) behind an internal ALB."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from stacks import names
from stacks.components.domain_certificate import DomainCertificate
from stacks.components.security_groups import closed_security_group

DOCKER_DIR = Path(__file__).resolve().parents[2] / "docker"
HTTP_PORT = 80
HTTPS_PORT = 443
# TLS 1.3 and 1.2 with forward-secret AES-GCM ciphers only, hybrid post-quantum key exchange offered.
TLS_POLICY = elbv2.SslPolicy.TLS13_12_RES_PQ
# Each container's only writable path (a task volume; the root filesystem is read-only).
SCRATCH_PATH = "/tmp"  # noqa: S108 - a per-task volume, no other user


@dataclass(frozen=True)
class OidcSettings:
    """What the MLflow container needs in sso mode (the OIDC plugin's settings)."""

    discovery_url: str
    # JSON fields client_id and client_secret: the UI's client at the provider.
    client_secret: secretsmanager.ISecret
    admin_group: str
    allowed_group: str | None
    # The claim the provider lists groups in (Cognito: cognito:groups), when not the usual "groups".
    groups_claim: str | None = None
    # App client ids whose client-credentials tokens act as MLflow users of that name (Studio profiles).
    machine_clients: tuple[str, ...] = ()


class TrackingService(Construct):
    """ECS cluster, task definition, service and internal load balancer.

    Only nginx's port is published; MLflow binds to 127.0.0.1 inside the task
    and is reachable through nginx alone. Secrets reach the containers only
    as ECS secrets, never as plain environment variables.

    ``auth_mode`` decides who checks credentials: in ``shared`` mode nginx
    (basic auth with ``server_credentials``), in ``accounts`` mode MLflow's
    auth app, whose admin is ``server_credentials`` and whose sessions are
    signed with ``session_key`` (required in that mode). In ``sso`` mode the
    MLflow container signs people in with the OIDC provider of ``oidc``
    (required in that mode) and signs sessions with ``session_key`` too; nginx
    checks nothing, as in ``accounts`` mode.

    ``ai_gateway`` turns on MLflow's AI gateway (``MLFLOW_ENABLE_AI_GATEWAY``), off otherwise.

    With ``domain_certificate`` the ALB listens with HTTPS (port 443) on that
    certificate instead of HTTP (port 80), and MLflow is told its public domain.
    Code inside the VPC that calls MLflow without API Gateway connects to
    ``load_balancer.load_balancer_dns_name`` with ``listener_scheme`` and
    ``listener_port``; with HTTPS it verifies the certificate against (and
    sends as SNI) ``server_name``, because the ALB's own DNS name is not on
    the certificate. The ALB's security group admits it with
    ``load_balancer.connections.allow_from(peer, ec2.Port.tcp(listener_port))``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection,
        artifact_bucket: s3.IBucket,
        database: ec2.IConnectable,
        database_secret: secretsmanager.ISecret,
        database_host: str,
        database_port: int,
        database_name: str,
        server_credentials: secretsmanager.ISecret,
        auth_mode: str,
        default_permission: str,
        session_key: secretsmanager.ISecret | None,
        webhook_key: secretsmanager.ISecret | None = None,
        oidc: OidcSettings | None,
        cpu: int,
        memory_mib: int,
        workers: int,
        desired_count: int,
        min_count: int,
        max_count: int,
        cpu_target_percent: int,
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
        domain_certificate: DomainCertificate | None,
        ai_gateway: bool = False,
        container_insights: str = "disabled",
    ) -> None:
        super().__init__(scope, construct_id)
        accounts, sso = auth_mode == "accounts", auth_mode == "sso"
        if (accounts or sso) and session_key is None:
            raise ValueError(f"{auth_mode} mode needs a session key secret")
        if sso and oidc is None:
            raise ValueError("sso mode needs the OIDC provider's settings")

        self.container_insights = container_insights
        self.cluster = ecs.Cluster(
            self, "Cluster", vpc=vpc, container_insights_v2=ecs.ContainerInsights[container_insights.upper()]
        )

        self.artifact_bucket = artifact_bucket
        self.task_role = iam.Role(
            self,
            "TaskRole",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            # MLflow serves artifacts and signs the presigned URLs clients transfer large ones with.
            description="MLflow server: read, write and list objects in the artifact bucket only",
        )
        self._grant_artifact_access(artifact_bucket)

        self.task_definition = ecs.FargateTaskDefinition(
            self,
            "TaskDefinition",
            cpu=cpu,
            memory_limit_mib=memory_mib,
            task_role=self.task_role,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=ecs.CpuArchitecture.X86_64,
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
        )

        mlflow_environment = {
            "DB_HOST": database_host,
            "DB_PORT": str(database_port),
            "DB_NAME": database_name,
            # MLflow serves artifacts (and presigns large transfers) from here.
            "MLFLOW_ARTIFACTS_DESTINATION": f"s3://{artifact_bucket.bucket_name}/{names.ARTIFACT_PREFIX}",
            "MLFLOW_WORKERS": str(workers),
            "MLFLOW_AUTH_MODE": auth_mode,
            "AWS_DEFAULT_REGION": Stack.of(self).region,
            # MLflow 3 turns its AI gateway on by default: it stores LLM provider keys and calls
            # providers from the server. Off unless the ai_gateway setting asks for it.
            "MLFLOW_ENABLE_AI_GATEWAY": "true" if ai_gateway else "false",
        }
        mlflow_secrets = {
            "DB_USERNAME": ecs.Secret.from_secrets_manager(database_secret, "username"),
            "DB_PASSWORD": ecs.Secret.from_secrets_manager(database_secret, "password"),
        }
        if webhook_key is not None:
            # Every task derives the key MLflow encrypts webhook secrets with from it (entrypoint.py).
            mlflow_secrets["MLFLOW_WEBHOOK_KEY"] = ecs.Secret.from_secrets_manager(webhook_key)
        nginx_secrets = {}
        if accounts:
            assert session_key is not None
            mlflow_environment |= {
                "MLFLOW_AUTH_DEFAULT_PERMISSION": default_permission,
                "MLFLOW_AUTH_DB_NAME": names.AUTH_DATABASE_NAME,
            }
            mlflow_secrets |= {
                "MLFLOW_AUTH_ADMIN_USERNAME": ecs.Secret.from_secrets_manager(server_credentials, "username"),
                "MLFLOW_AUTH_ADMIN_PASSWORD": ecs.Secret.from_secrets_manager(server_credentials, "password"),
                "MLFLOW_FLASK_SERVER_SECRET_KEY": ecs.Secret.from_secrets_manager(session_key),
            }
        elif sso:
            assert session_key is not None and oidc is not None
            mlflow_environment |= {
                "MLFLOW_AUTH_DEFAULT_PERMISSION": default_permission,
                "OIDC_DISCOVERY_URL": oidc.discovery_url,
                "OIDC_ADMIN_GROUP": oidc.admin_group,
            }
            if oidc.allowed_group is not None:
                mlflow_environment["OIDC_ALLOWED_GROUP"] = oidc.allowed_group
            if oidc.groups_claim is not None:
                mlflow_environment["OIDC_GROUPS_CLAIM"] = oidc.groups_claim
            if oidc.machine_clients:
                mlflow_environment["OIDC_MACHINE_CLIENTS"] = ",".join(oidc.machine_clients)
            mlflow_secrets |= {
                "OIDC_CLIENT_ID": ecs.Secret.from_secrets_manager(oidc.client_secret, "client_id"),
                "OIDC_CLIENT_SECRET": ecs.Secret.from_secrets_manager(oidc.client_secret, "client_secret"),
                "MLFLOW_FLASK_SERVER_SECRET_KEY": ecs.Secret.from_secrets_manager(session_key),
            }
        else:
            nginx_secrets = {
                "MLFLOW_USERNAME": ecs.Secret.from_secrets_manager(server_credentials, "username"),
                "MLFLOW_PASSWORD": ecs.Secret.from_secrets_manager(server_credentials, "password"),
            }

        mlflow = self._add_container(
            "mlflow",
            log_retention,
            removal_policy,
            environment=mlflow_environment,
            secrets=mlflow_secrets,
            health_check=ecs.HealthCheck(
                command=[
                    "CMD",
                    "python",
                    "-c",
                    f"import urllib.request as u; u.urlopen('http://127.0.0.1:{names.MLFLOW_PORT}/health', timeout=4)",
                ],
                interval=Duration.seconds(15),
                timeout=Duration.seconds(5),
                retries=3,
                # Schema upgrades on a resuming Aurora cluster can take a while.
                start_period=Duration.seconds(120),
            ),
        )

        if domain_certificate is not None:
            # Added to MLflow's allowed hosts and CORS origins by the entrypoint.
            mlflow.add_environment("MLFLOW_PUBLIC_DOMAIN", domain_certificate.domain_name)

        nginx = self._add_container(
            "nginx",
            log_retention,
            removal_policy,
            port_mappings=[ecs.PortMapping(container_port=names.NGINX_PORT)],
            environment={
                "NGINX_PORT": str(names.NGINX_PORT),
                "MLFLOW_UPSTREAM": f"127.0.0.1:{names.MLFLOW_PORT}",
                "MLFLOW_AUTH_MODE": auth_mode,
            },
            # In accounts and sso modes nginx checks nothing itself and needs no credential.
            secrets=nginx_secrets or None,
        )
        nginx.add_container_dependencies(
            ecs.ContainerDependency(container=mlflow, condition=ecs.ContainerDependencyCondition.START)
        )

        self.security_group = closed_security_group(
            self, "TaskSecurityGroup", vpc=vpc, description="MLflow tasks: nginx port from the ALB only"
        )
        # AWS APIs (S3, Secrets Manager, ECR, CloudWatch Logs) through the NAT gateway.
        self.security_group.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "HTTPS to AWS APIs")
        # Egress here and the matching ingress on the database's security group.
        self.security_group.connections.allow_to(database, ec2.Port.tcp(database_port), "MLflow tasks to Aurora")

        self.service = ecs.FargateService(
            self,
            "Service",
            cluster=self.cluster,
            task_definition=self.task_definition,
            desired_count=desired_count,
            # Subnets in every configured AZ: ECS spreads Fargate tasks across them.
            vpc_subnets=subnets,
            security_groups=[self.security_group],
            assign_public_ip=False,
            circuit_breaker=ecs.DeploymentCircuitBreaker(enable=True, rollback=True),
            min_healthy_percent=100,
            max_healthy_percent=200,
            health_check_grace_period=Duration.seconds(180),
        )
        scaling = self.service.auto_scale_task_count(min_capacity=min_count, max_capacity=max_count)
        scaling.scale_on_cpu_utilization(
            "CpuScaling",
            target_utilization_percent=cpu_target_percent,
            scale_in_cooldown=Duration.minutes(5),
            scale_out_cooldown=Duration.minutes(1),
        )

        self.load_balancer_security_group = closed_security_group(
            self,
            "LoadBalancerSecurityGroup",
            vpc=vpc,
            description="Internal MLflow ALB: reachable only from the API Gateway VPC link",
        )
        self.load_balancer = elbv2.ApplicationLoadBalancer(
            self,
            "LoadBalancer",
            vpc=vpc,
            vpc_subnets=subnets,
            internet_facing=False,
            security_group=self.load_balancer_security_group,
            drop_invalid_header_fields=True,
            # API Gateway gives up after 30 s; keep the ALB's idle timeout just above it.
            idle_timeout=Duration.seconds(35),
            # Kept data needs its front door kept too: no deletion by accident.
            deletion_protection=removal_policy != RemovalPolicy.DESTROY,
        )

        # open=False: the listener must not add a 0.0.0.0/0 ingress rule.
        if domain_certificate is None:
            self.listener_scheme, self.listener_port, self.server_name = "http", HTTP_PORT, None
            self.listener = self.load_balancer.add_listener(
                "Http", port=HTTP_PORT, protocol=elbv2.ApplicationProtocol.HTTP, open=False
            )
        else:
            self.listener_scheme, self.listener_port = "https", HTTPS_PORT
            self.server_name = domain_certificate.domain_name
            self.listener = self.load_balancer.add_listener(
                "Https",
                port=HTTPS_PORT,
                protocol=elbv2.ApplicationProtocol.HTTPS,
                certificates=[elbv2.ListenerCertificate.from_certificate_manager(domain_certificate.certificate)],
                ssl_policy=TLS_POLICY,
                open=False,
            )
        self.target_group = self.listener.add_targets(
            "Nginx",
            port=names.NGINX_PORT,
            protocol=elbv2.ApplicationProtocol.HTTP,
            targets=[self.service.load_balancer_target(container_name="nginx", container_port=names.NGINX_PORT)],
            health_check=elbv2.HealthCheck(
                path=names.HEALTH_CHECK_PATH,
                healthy_http_codes="200",
                interval=Duration.seconds(15),
                timeout=Duration.seconds(5),
                healthy_threshold_count=2,
                unhealthy_threshold_count=3,
            ),
            deregistration_delay=Duration.seconds(30),
        )

    def _grant_artifact_access(self, bucket: s3.IBucket) -> None:
        self.task_role.add_to_policy(
            iam.PolicyStatement(
                sid="ListArtifactBucket",
                actions=["s3:ListBucket", "s3:GetBucketLocation"],
                resources=[bucket.bucket_arn],
            )
        )
        self.task_role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadWriteArtifacts",
                actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
                resources=[bucket.arn_for_objects("*")],
            )
        )

    def _add_container(
        self, name: str, retention: logs.RetentionDays, removal_policy: RemovalPolicy, **options: Any
    ) -> ecs.ContainerDefinition:
        """An essential container built from docker/<name>, logging to its own group."""
        group = logs.LogGroup(self, f"{name.capitalize()}Logs", retention=retention, removal_policy=removal_policy)
        container = self.task_definition.add_container(
            name,
            image=ecs.ContainerImage.from_asset(str(DOCKER_DIR / name), platform=ecr_assets.Platform.LINUX_AMD64),
            essential=True,
            # Time to finish in-flight requests (up to API Gateway's 30 s) on a stop.
            stop_timeout=Duration.seconds(30),
            logging=ecs.LogDrivers.aws_logs(stream_prefix=name, log_group=group),
            # Nothing in the image can be changed at run time; the one writable
            # place is the container's own scratch volume at /tmp (the image's
            # VOLUME /tmp gives it owner and contents), not shared with the other container.
            readonly_root_filesystem=True,
            **options,
        )
        scratch = f"{name}-tmp"
        self.task_definition.add_volume(name=scratch)
        container.add_mount_points(ecs.MountPoint(container_path=SCRATCH_PATH, source_volume=scratch, read_only=False))
        return container
