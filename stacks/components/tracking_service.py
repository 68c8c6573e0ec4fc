"""The MLflow tracking server: one Fargate task (nginx + mlflow) behind an internal ALB."""

import json
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
from constructs import Construct

from stacks import iam_callers, names
from stacks.auth_modes import MODES
from stacks.components.function_code import NOT_SOURCE
from stacks.components.security_groups import closed_security_group
from stacks.components.tracking_service_props import ServiceSize, TrackingServiceProps
from stacks.config.service import TaskArchitecture

DOCKER_DIR = Path(__file__).resolve().parents[2] / "docker"
# The task's platform and the platform its two images are built for go together.
_CPU_ARCHITECTURE: dict[TaskArchitecture, ecs.CpuArchitecture] = {
    "x86_64": ecs.CpuArchitecture.X86_64,
    "arm64": ecs.CpuArchitecture.ARM64,
}
_IMAGE_PLATFORM: dict[TaskArchitecture, ecr_assets.Platform] = {
    "x86_64": ecr_assets.Platform.LINUX_AMD64,
    "arm64": ecr_assets.Platform.LINUX_ARM64,
}
HTTP_PORT = 80
HTTPS_PORT = 443
# The IAM API's listener (IAM sign-in), in the same scheme as the first.
IAM_HTTP_PORT = 8081
IAM_HTTPS_PORT = 8443
# TLS 1.3 and 1.2 with forward-secret AES-GCM ciphers only, hybrid post-quantum key exchange offered.
TLS_POLICY = elbv2.SslPolicy.TLS13_12_RES_PQ
# ECS's names for its two Fargate capacity providers.
FARGATE = "FARGATE"
FARGATE_SPOT = "FARGATE_SPOT"
# The highest weight ECS accepts in a capacity provider strategy.
SPOT_WEIGHT = 1000
# Changed only when running tasks must move at the next deploy (see the ForceNewDeployment override).
CAPACITY_PROVIDER_STRATEGY_NONCE = "capacity-provider-strategy-1"
# Each container's only writable path (a task volume; the root filesystem is read-only).
SCRATCH_PATH = "/tmp"  # noqa: S108 - a per-task volume, no other user


class TrackingService(Construct):
    """ECS cluster, task definition, service and internal load balancer.

    Only nginx's port is published; MLflow binds to 127.0.0.1 inside the task
    and is reachable through nginx alone. Secrets reach the containers only
    as ECS secrets, never as plain environment variables.

    ``props.auth`` decides who checks credentials, as the mode's row of the
    mode table says: nginx (basic auth with ``server_credentials``), or the
    app MLflow serves (its basic-auth app, whose admin is ``server_credentials``,
    or the OIDC plugin signing people in with ``oidc``'s provider), which signs
    sessions with ``session_key``; nginx then checks nothing.

    With a domain certificate the ALB listens with HTTPS (port 443) on that
    certificate instead of HTTP (port 80), and MLflow is told its public domain.
    Code inside the VPC that calls MLflow without API Gateway connects to
    ``load_balancer.load_balancer_dns_name`` with ``listener_scheme`` and
    ``listener_port``; with HTTPS it verifies the certificate against (and
    sends as SNI) ``server_name``, because the ALB's own DNS name is not on
    the certificate. The ALB's security group admits it with
    ``load_balancer.connections.allow_from(peer, ec2.Port.tcp(listener_port))``.
    """

    def __init__(self, scope: Construct, construct_id: str, *, props: TrackingServiceProps) -> None:
        super().__init__(scope, construct_id)
        self.props = props
        vpc, size, database = props.vpc, props.size, props.database
        log_retention, removal_policy = props.log_retention, props.removal_policy
        artifact_bucket, domain_certificate = props.artifact_bucket, props.domain_certificate

        self.container_insights = props.container_insights
        # Each container's image, built from docker/<name> (the gc task runs the mlflow one).
        self.images: dict[str, ecs.ContainerImage] = {}
        self.cluster = ecs.Cluster(
            self, "Cluster", vpc=vpc, container_insights_v2=ecs.ContainerInsights[props.container_insights.upper()]
        )

        self.artifact_bucket = artifact_bucket
        self.task_role = iam.Role(
            self,
            "TaskRole",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            # MLflow serves artifacts and signs the presigned URLs clients transfer large ones with.
            description="MLflow server: the artifact bucket's objects, and writing to the audit log group",
        )
        self._grant_artifact_access(artifact_bucket)

        # The audit lines (docker/mlflow/audit_log.py), kept apart and longer than the server's
        # log: the MLflow processes send them here themselves (audit_cloudwatch.py), since the
        # awslogs driver cannot split one container's output between groups.
        self.audit_log_group = logs.LogGroup(
            self, "AuditLogs", retention=props.audit_log_retention, removal_policy=removal_policy
        )
        self.audit_log_group.grant_write(self.task_role)

        self._image_platform = _IMAGE_PLATFORM[props.architecture]
        # The images' platform: every task running them (the gc task too) asks for it.
        self.runtime_platform = ecs.RuntimePlatform(
            cpu_architecture=_CPU_ARCHITECTURE[props.architecture],
            operating_system_family=ecs.OperatingSystemFamily.LINUX,
        )
        self.task_definition = ecs.FargateTaskDefinition(
            self,
            "TaskDefinition",
            cpu=size.cpu,
            memory_limit_mib=size.memory_mib,
            task_role=self.task_role,
            runtime_platform=self.runtime_platform,
        )

        mlflow_environment, mlflow_secrets, nginx_secrets = self._container_settings(props)
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

        iam_sign_in = props.auth.iam
        nginx_ports = [names.NGINX_PORT] + ([names.NGINX_IAM_PORT] if iam_sign_in is not None else [])
        nginx = self._add_container(
            "nginx",
            log_retention,
            removal_policy,
            port_mappings=[ecs.PortMapping(container_port=port) for port in nginx_ports],
            environment={
                "NGINX_PORT": str(names.NGINX_PORT),
                "MLFLOW_UPSTREAM": f"127.0.0.1:{names.MLFLOW_PORT}",
                "MLFLOW_AUTH_MODE": props.auth.mode,
                # The server block that trusts the IAM API's caller header (only its listener reaches it).
                **({"NGINX_IAM_LISTEN": str(names.NGINX_IAM_PORT)} if iam_sign_in is not None else {}),
            },
            # Where MLflow's app checks credentials, nginx checks nothing and needs no credential.
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
        self.security_group.connections.allow_to(
            database.connectable, ec2.Port.tcp(database.port), "MLflow tasks to Aurora"
        )

        # Written out rather than Cluster.enable_fargate_capacity_providers(), whose association
        # the service would not wait for: a strategy naming a provider the cluster does not have
        # yet fails the service's creation.
        self.capacity_providers = ecs.CfnClusterCapacityProviderAssociations(
            self,
            "CapacityProviders",
            cluster=self.cluster.cluster_name,
            capacity_providers=[FARGATE, FARGATE_SPOT],
            default_capacity_provider_strategy=[],
        )
        self.service = ecs.FargateService(
            self,
            "Service",
            cluster=self.cluster,
            task_definition=self.task_definition,
            desired_count=size.desired_count,
            capacity_provider_strategies=self._capacity(size),
            # Subnets in every configured AZ: ECS spreads Fargate tasks across them.
            vpc_subnets=props.subnets,
            security_groups=[self.security_group],
            assign_public_ip=False,
            circuit_breaker=ecs.DeploymentCircuitBreaker(enable=True, rollback=True),
            min_healthy_percent=100,
            max_healthy_percent=200,
            health_check_grace_period=Duration.seconds(180),
        )
        self.service.node.add_dependency(self.capacity_providers)
        # A service deployed with the plain launch type (before on_demand_task_count) moves to a
        # strategy only with a new deployment (AWS's ECS best practices guide, "Amazon ECS clusters
        # for Fargate"). CloudFormation forces one when this property first appears, or when the
        # nonce changes; never on a deploy that leaves both as they are.
        cfn_service = self.service.node.default_child
        assert isinstance(cfn_service, ecs.CfnService)
        cfn_service.add_property_override(
            "ForceNewDeployment",
            {"EnableForceNewDeployment": True, "ForceNewDeploymentNonce": CAPACITY_PROVIDER_STRATEGY_NONCE},
        )
        # The service's scalable target; scheduled actions (scale to zero at night) are added to it.
        self.scaling = self.service.auto_scale_task_count(min_capacity=size.min_count, max_capacity=size.max_count)
        self.scaling.scale_on_cpu_utilization(
            "CpuScaling",
            target_utilization_percent=size.cpu_target_percent,
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
            vpc_subnets=props.subnets,
            internet_facing=False,
            security_group=self.load_balancer_security_group,
            drop_invalid_header_fields=True,
            # API Gateway gives up after 30 s; keep the ALB's idle timeout just above it.
            idle_timeout=Duration.seconds(35),
            # Kept data needs its front door kept too: no deletion by accident.
            deletion_protection=removal_policy != RemovalPolicy.DESTROY,
        )

        self.listener_scheme = "http" if domain_certificate is None else "https"
        self.server_name = None if domain_certificate is None else domain_certificate.domain_name
        self.listener_port = HTTP_PORT if domain_certificate is None else HTTPS_PORT
        self.listener, self.target_group = self.nginx_listener(
            "Http" if domain_certificate is None else "Https",
            "Nginx",
            listener_port=self.listener_port,
            container_port=names.NGINX_PORT,
        )
        # IAM sign-in: nginx's IAM server block behind a listener of its own, which only the IAM API reaches.
        self.iam_listener_port: int | None = None
        self.iam_listener: elbv2.ApplicationListener | None = None
        self.iam_target_group: elbv2.ApplicationTargetGroup | None = None
        if iam_sign_in is not None:
            self.iam_listener_port = IAM_HTTP_PORT if domain_certificate is None else IAM_HTTPS_PORT
            self.iam_listener, self.iam_target_group = self.nginx_listener(
                "Iam", "NginxIam", listener_port=self.iam_listener_port, container_port=names.NGINX_IAM_PORT
            )

    def _capacity(self, size: ServiceSize) -> list[ecs.CapacityProviderStrategy]:
        """The first ``on_demand_count`` tasks on regular Fargate, every task beyond them on Fargate Spot.

        ECS places a strategy's base before it shares the other tasks out by
        weight. Regular Fargate keeps weight 1: ECS places nothing on a provider
        of weight 0, and we do not rely on it honouring a base there. Spot's
        weight is the most ECS accepts, so the tasks beyond the base go to Spot.
        A strategy (never the plain launch type) either way, so turning Spot on
        or off later is a change ECS makes in place.
        """
        if not size.uses_spot:
            return [ecs.CapacityProviderStrategy(capacity_provider=FARGATE, weight=1)]
        return [
            ecs.CapacityProviderStrategy(capacity_provider=FARGATE, base=size.on_demand_count, weight=1),
            ecs.CapacityProviderStrategy(capacity_provider=FARGATE_SPOT, weight=SPOT_WEIGHT),
        ]

    def nginx_listener(
        self, listener_id: str, target_id: str, *, listener_port: int, container_port: int
    ) -> tuple[elbv2.ApplicationListener, elbv2.ApplicationTargetGroup]:
        """An ALB listener (HTTPS on the domain's certificate when there is one) to one nginx port of the service."""
        certificate = self.props.domain_certificate
        # open=False: the listener must not add a 0.0.0.0/0 ingress rule.
        if certificate is None:
            listener = self.load_balancer.add_listener(
                listener_id, port=listener_port, protocol=elbv2.ApplicationProtocol.HTTP, open=False
            )
        else:
            listener = self.load_balancer.add_listener(
                listener_id,
                port=listener_port,
                protocol=elbv2.ApplicationProtocol.HTTPS,
                certificates=[elbv2.ListenerCertificate.from_certificate_manager(certificate.certificate)],
                ssl_policy=TLS_POLICY,
                open=False,
            )
        target_group = listener.add_targets(
            target_id,
            port=container_port,
            protocol=elbv2.ApplicationProtocol.HTTP,
            targets=[self.service.load_balancer_target(container_name="nginx", container_port=container_port)],
            # Both of nginx's server blocks answer the health path without credentials.
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
        return listener, target_group

    def _container_settings(
        self, props: TrackingServiceProps
    ) -> tuple[dict[str, str], dict[str, ecs.Secret], dict[str, ecs.Secret]]:
        """MLflow's environment and secrets, and nginx's secrets, for the mode's needs."""
        auth, database = props.auth, props.database
        needs = MODES[auth.mode]
        region = {"AWS_DEFAULT_REGION": Stack.of(self).region}
        # Where MLflow keeps runs and artifacts: what every task running the mlflow image needs.
        self.store_environment = {
            "DB_HOST": database.host,
            "DB_PORT": str(database.port),
            "DB_NAME": database.name,
            # MLflow serves artifacts (and presigns large transfers) from here.
            "MLFLOW_ARTIFACTS_DESTINATION": f"s3://{props.artifact_bucket.bucket_name}/{names.ARTIFACT_PREFIX}",
            **region,
        }
        self.store_secrets = {
            "DB_USERNAME": ecs.Secret.from_secrets_manager(database.secret, "username"),
            "DB_PASSWORD": ecs.Secret.from_secrets_manager(database.secret, "password"),
        }
        mlflow_environment = {
            # In the order the service's task definition always had (a new order is a new revision).
            **{key: value for key, value in self.store_environment.items() if key not in region},
            "MLFLOW_WORKERS": str(props.size.workers),
            "MLFLOW_AUTH_MODE": auth.mode,
            **region,
            # MLflow 3 turns its AI gateway on by default: it stores LLM provider keys and calls
            # providers from the server. Off unless the ai_gateway setting asks for it.
            "MLFLOW_ENABLE_AI_GATEWAY": "true" if props.ai_gateway else "false",
            "MLFLOW_AUDIT_LOG_GROUP": self.audit_log_group.log_group_name,
        }
        mlflow_secrets = dict(self.store_secrets)
        if props.webhook_key is not None:
            # Every task derives the key MLflow encrypts webhook secrets with from it (entrypoint.py).
            mlflow_secrets["MLFLOW_WEBHOOK_KEY"] = ecs.Secret.from_secrets_manager(props.webhook_key)
        if props.deployment_login is not None:
            # Not secret: where the entrypoint writes the access token it issues the deployment functions.
            mlflow_environment[names.DEPLOYMENT_LOGIN_SECRET_ENV] = props.deployment_login.secret_arn
            self.task_role.add_to_policy(
                iam.PolicyStatement(
                    sid="IssueDeploymentLogin",
                    actions=["secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue"],
                    resources=[props.deployment_login.secret_arn],
                )
            )
        nginx_secrets = {}
        if needs.permissions:
            mlflow_environment["MLFLOW_AUTH_DEFAULT_PERMISSION"] = auth.default_permission
        if needs.admin_login:
            # As the entrypoint's default (the same table's); the other modes leave it to that default.
            assert needs.auth_database is not None
            mlflow_environment["MLFLOW_AUTH_DB_NAME"] = needs.auth_database
            mlflow_secrets |= {
                "MLFLOW_AUTH_ADMIN_USERNAME": ecs.Secret.from_secrets_manager(auth.server_credentials, "username"),
                "MLFLOW_AUTH_ADMIN_PASSWORD": ecs.Secret.from_secrets_manager(auth.server_credentials, "password"),
            }
        if needs.sign_in_provider:
            oidc = auth.oidc
            assert oidc is not None
            mlflow_environment |= {"OIDC_DISCOVERY_URL": oidc.discovery_url, "OIDC_ADMIN_GROUP": oidc.admin_group}
            if oidc.allowed_group is not None:
                mlflow_environment["OIDC_ALLOWED_GROUP"] = oidc.allowed_group
            if oidc.groups_claim is not None:
                mlflow_environment["OIDC_GROUPS_CLAIM"] = oidc.groups_claim
            if oidc.machine_clients:
                mlflow_environment["OIDC_MACHINE_CLIENTS"] = ",".join(oidc.machine_clients)
            mlflow_secrets |= {
                "OIDC_CLIENT_ID": ecs.Secret.from_secrets_manager(oidc.client_secret, "client_id"),
                "OIDC_CLIENT_SECRET": ecs.Secret.from_secrets_manager(oidc.client_secret, "client_secret"),
            }
        if auth.iam is not None:
            mlflow_environment |= {
                iam_callers.SIGN_IN_ENV: "true",
                # Not secret: ARNs and user names, as the iam_principals setting holds them.
                iam_callers.PRINCIPALS_ENV: json.dumps(dict(auth.iam.principals), sort_keys=True),
                iam_callers.PRINCIPALS_PATH_ENV: auth.iam.principals_path,
            }
            # GetParametersByPath is authorised against the path asked for, not the parameters returned.
            self.task_role.add_to_policy(
                iam.PolicyStatement(
                    sid="ReadIamPrincipals",
                    actions=["ssm:GetParametersByPath"],
                    resources=[
                        Stack.of(self).format_arn(
                            service="ssm", resource="parameter", resource_name=auth.iam.principals_path.lstrip("/")
                        )
                    ],
                )
            )
        if needs.session_key:
            assert auth.session_key is not None
            mlflow_secrets["MLFLOW_FLASK_SERVER_SECRET_KEY"] = ecs.Secret.from_secrets_manager(auth.session_key)
        if needs.nginx_basic_auth:
            nginx_secrets = {
                "MLFLOW_USERNAME": ecs.Secret.from_secrets_manager(auth.server_credentials, "username"),
                "MLFLOW_PASSWORD": ecs.Secret.from_secrets_manager(auth.server_credentials, "password"),
            }
        return mlflow_environment, mlflow_secrets, nginx_secrets

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
        self.images[name] = ecs.ContainerImage.from_asset(
            str(DOCKER_DIR / name), platform=self._image_platform, exclude=NOT_SOURCE
        )
        container = self.task_definition.add_container(
            name,
            image=self.images[name],
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
