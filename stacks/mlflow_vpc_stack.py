"""MLflowVpcStack: network, storage, database, secrets and the tracking service."""

from typing import Any

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from stacks import names
from stacks.alarm_thresholds import rule
from stacks.components.artifact_store import ArtifactStore
from stacks.components.cognito_identity import CognitoIdentity
from stacks.components.database import MetadataDatabase
from stacks.components.deployment_login import DeploymentLogin
from stacks.components.domain_certificate import DomainCertificate
from stacks.components.external_issuer import ExternalIssuer
from stacks.components.garbage_collection import ScheduledGarbageCollection
from stacks.components.internal_mlflow import InternalMlflow
from stacks.components.network import Network
from stacks.components.oauth_client_login import CognitoMachineClient
from stacks.components.scale_to_zero import ScheduledScaleToZero
from stacks.components.server_credentials import ServerCredentials
from stacks.components.session_key import SessionKey
from stacks.components.tracking_service import TrackingService
from stacks.components.tracking_service_props import (
    AuthSettings,
    DatabaseEndpoint,
    IamSignInSettings,
    OidcSettings,
    ServiceSize,
    TrackingServiceProps,
)
from stacks.components.upgrade_gate import UpgradeGate
from stacks.config import ProjectConfig
from stacks.mlflow_version import pinned_mlflow_version


class MLflowVpcStack(Stack):
    """Everything that runs inside the project VPC, and in sso mode the identity provider its tasks trust
    (the Cognito pool, or what the stack knows of an external issuer)."""

    def __init__(self, scope: Construct, construct_id: str, *, config: ProjectConfig, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        retention = config.operations.log_retention
        removal = config.operations.cdk_removal_policy

        self.network = Network(
            self,
            "Network",
            cidr=config.network.vpc_cidr,
            az_count=config.network.az_count,
            nat_gateways=config.network.nat_gateways,
            log_retention=retention,
            removal_policy=removal,
        )
        self.storage = ArtifactStore(
            self,
            "Storage",
            removal_policy=removal,
            access_log_retention=Duration.days(config.operations.log_retention_days),
            noncurrent_version_retention=Duration.days(config.operations.artifact_version_retention_days),
        )
        for profile in config.studio.user_profiles:
            self.storage.add_profile_access(profile)
        if config.studio.model_deployments:
            self.storage.add_model_deployment_access()
        self.credentials = ServerCredentials(
            self,
            "Credentials",
            secret_name=config.auth.credentials_secret_name,
            auth_mode=config.auth.auth_mode,
            removal_policy=removal,
        )
        self.session_key = SessionKey(self, "SessionKey") if config.auth.needs.session_key else None
        # The model deployment webhook's secret is stored encrypted by MLflow: one key for every task.
        self.webhook_key = (
            SessionKey(self, "WebhookKey", description="Key material of MLflow's webhook secret encryption, every task")
            if config.studio.model_deployments
            else None
        )
        # sso mode signs nobody in with the server login: the deployment functions get a login of their own.
        self.deployment_login = (
            DeploymentLogin(self, "DeploymentLogin", removal_policy=removal)
            if config.studio.model_deployments and not config.auth.needs.uses_credentials
            else None
        )
        self.database = MetadataDatabase(
            self,
            "Database",
            vpc=self.network.vpc,
            subnets=self.network.isolated_subnets,
            database_name=names.DATABASE_NAME,
            min_capacity=config.database.aurora_min_acu,
            max_capacity=config.database.aurora_max_acu,
            auto_pause=config.database.aurora_auto_pause,
            backup_retention=Duration.days(config.operations.backup_retention_days),
            removal_policy=removal,
            log_retention=retention,
        )
        domain = config.domain.custom_domain
        self.domain_certificate = (
            DomainCertificate(
                self, "DomainCertificate", domain_name=domain.name, zone_id=domain.zone_id, zone_name=domain.zone_name
            )
            if domain
            else None
        )
        self.identity, oidc = self._identity_provider(config)
        self.tracking = TrackingService(
            self,
            "Tracking",
            props=TrackingServiceProps(
                vpc=self.network.vpc,
                subnets=self.network.private_subnets,
                artifact_bucket=self.storage.bucket,
                database=DatabaseEndpoint(
                    connectable=self.database.cluster,
                    secret=self.database.secret,
                    host=self.database.hostname,
                    port=self.database.port,
                    name=names.DATABASE_NAME,
                ),
                auth=AuthSettings(
                    mode=config.auth.auth_mode,
                    default_permission=config.auth.default_permission,
                    server_credentials=self.credentials.secret,
                    session_key=self.session_key.secret if self.session_key else None,
                    oidc=oidc,
                    iam=(
                        IamSignInSettings(
                            principals=config.auth.iam_principals, principals_path=names.SSM_IAM_PRINCIPALS
                        )
                        if config.iam_sign_in_enabled
                        else None
                    ),
                ),
                size=ServiceSize(
                    cpu=config.service.task_cpu,
                    memory_mib=config.service.task_memory_mib,
                    workers=config.service.mlflow_workers,
                    desired_count=config.service.desired_task_count,
                    min_count=config.service.min_task_count,
                    max_count=config.service.max_task_count,
                    cpu_target_percent=config.service.cpu_scaling_target_percent,
                    on_demand_count=config.service.on_demand_task_count,
                ),
                log_retention=retention,
                audit_log_retention=config.operations.audit_log_retention,
                removal_policy=removal,
                domain_certificate=self.domain_certificate,
                ai_gateway=config.service.ai_gateway,
                container_insights=config.service.container_insights,
                architecture=config.service.task_architecture,
                webhook_key=self.webhook_key.secret if self.webhook_key else None,
                deployment_login=self.deployment_login.secret if self.deployment_login else None,
            ),
        )
        # A new MLflow version: snapshot, old tasks to 0, then the new ones (one migrates); README, "Upgrading MLflow".
        self.upgrade_gate = UpgradeGate(
            self,
            "UpgradeGate",
            mlflow_version=pinned_mlflow_version(),
            database=self.database.cluster,
            cluster=self.tracking.cluster,
            service=self.tracking.service,
            log_retention=retention,
            removal_policy=removal,
        )
        # Deleted runs, experiments and logged models leave Aurora and S3 (docs/operations.md).
        self.garbage_collection = (
            ScheduledGarbageCollection(
                self,
                "GarbageCollection",
                schedule=config.operations.gc_schedule,
                older_than_days=config.operations.gc_older_than_days,
                delete_orphans=config.operations.gc_delete_orphans,
                cluster=self.tracking.cluster,
                subnets=self.network.private_subnets,
                security_group=self.tracking.security_group,
                image=self.tracking.images["mlflow"],
                runtime_platform=self.tracking.runtime_platform,
                task_role=self.tracking.task_role,
                execution_role=self.tracking.task_definition.obtain_execution_role(),
                environment=self.tracking.store_environment,
                secrets=self.tracking.store_secrets,
                log_retention=retention,
                removal_policy=removal,
            )
            if config.operations.gc_schedule
            else None
        )
        night = config.service.schedule_scale_to_zero
        # Zero tasks outside working hours, a 503 page meanwhile (docs/operations.md).
        self.scale_to_zero = (
            ScheduledScaleToZero(
                self,
                "ScaleToZero",
                down=night.down,
                up=night.up,
                scaling=self.tracking.scaling,
                min_count=config.service.min_task_count,
                max_count=config.service.max_task_count,
                listener=self.tracking.listener,
                target_group=self.tracking.target_group,
                alarm_name=rule("tasks-below-desired").alarm_name,
                iam_listener=self.tracking.iam_listener,
                iam_target_group=self.tracking.iam_target_group,
            )
            if night
            else None
        )
        if self.database.protection_release is not None:
            # The ALB is protected under retain too; `cdk destroy` lifts both.
            self.database.protection_release.add_load_balancer(self.tracking.load_balancer)

        # What the other stacks need, as attributes (passed on in app.py).
        self.vpc = self.network.vpc
        self.private_subnets = self.network.private_subnets
        self.artifact_bucket = self.storage.bucket
        self.credentials_secret = self.credentials.secret
        # What the model deployment functions sign in to MLflow with.
        self.deployment_login_secret = (
            self.deployment_login.secret if self.deployment_login else self.credentials_secret
        )
        self.listener = self.tracking.listener
        self.load_balancer = self.tracking.load_balancer
        self.load_balancer_port = self.tracking.listener_port
        # IAM sign-in: the listener only the IAM API reaches (None when off).
        self.iam_listener = self.tracking.iam_listener
        self.iam_listener_port = self.tracking.iam_listener_port
        self.internal_mlflow = InternalMlflow(
            vpc=self.vpc,
            subnets=self.private_subnets,
            load_balancer=self.load_balancer,
            port=self.load_balancer_port,
            scheme=self.tracking.listener_scheme,
            server_name=self.tracking.server_name,
        )
        self.certificate = self.domain_certificate.certificate if self.domain_certificate else None

        if isinstance(self.identity, CognitoIdentity):
            for key, value in (
                (names.OUTPUT_USER_POOL_ID, self.identity.user_pool.user_pool_id),
                (names.OUTPUT_SIGN_IN_URL, self.identity.sign_in_url),
                (names.OUTPUT_TOKEN_URL, self.identity.token_url),
                (names.OUTPUT_API_SCOPE, names.API_SCOPE),
            ):
                CfnOutput(self, key, value=value).override_logical_id(key)

        ssm.StringParameter(
            self,
            "ArtifactBucketParameter",
            parameter_name=names.SSM_ARTIFACT_BUCKET,
            string_value=self.artifact_bucket.bucket_name,
            description="S3 bucket holding MLflow artifacts",
        )
        CfnOutput(self, names.OUTPUT_ARTIFACT_BUCKET, value=self.artifact_bucket.bucket_name).override_logical_id(
            names.OUTPUT_ARTIFACT_BUCKET
        )
        CfnOutput(self, names.OUTPUT_CREDENTIALS_SECRET, value=config.auth.credentials_secret_name).override_logical_id(
            names.OUTPUT_CREDENTIALS_SECRET
        )
        # For `make rotate-password`: which tasks to restart, and whether the secret is nginx's password.
        for key, value in (
            (names.OUTPUT_ECS_CLUSTER, self.tracking.cluster.cluster_name),
            (names.OUTPUT_ECS_SERVICE, self.tracking.service.service_name),
            (names.OUTPUT_AUTH_MODE, config.auth.auth_mode),
            # Names the final snapshot after `cdk destroy` (README, Teardown).
            (names.OUTPUT_DATABASE_CLUSTER, self.database.cluster.cluster_identifier),
            # Where the audit lines are (docs/security.md, Audit trail).
            (names.OUTPUT_AUDIT_LOG_GROUP, self.tracking.audit_log_group.log_group_name),
        ):
            CfnOutput(self, key, value=value).override_logical_id(key)

    def _identity_provider(
        self, config: ProjectConfig
    ) -> tuple[CognitoIdentity | ExternalIssuer | None, OidcSettings | None]:
        """sso mode: the Cognito pool this stack creates, or the external issuer it is told about."""
        # Studio profile -> its Cognito app client (sso mode with Cognito), for the Studio stack.
        self.machine_clients: dict[str, CognitoMachineClient] = {}
        if not config.auth.needs.sign_in_provider:
            return None, None
        if config.cognito_enabled:
            domain = config.domain.custom_domain
            identity: CognitoIdentity | ExternalIssuer = CognitoIdentity(
                self,
                "Identity",
                domain_prefix=config.sso.cognito_domain_prefix,
                identity_providers=config.sso.cognito_identity_providers,
                federation=config.sso.cognito_federation,
                admin_group=config.sso.oidc_admin_group,
                allowed_group=config.sso.oidc_allowed_group,
                # Known here only with a custom domain; otherwise the gateway stack registers it.
                public_url=domain.url if domain else None,
                removal_policy=config.operations.cdk_removal_policy,
            )
            groups_claim: str | None = "cognito:groups"
        else:
            assert config.sso.oidc_discovery_url is not None and config.sso.oidc_client_secret_name is not None
            identity = ExternalIssuer(
                self,
                "ExternalIssuer",
                discovery_url=config.sso.oidc_discovery_url,
                client_secret_name=config.sso.oidc_client_secret_name,
            )
            groups_claim = None
        if isinstance(identity, CognitoIdentity):
            # Each Studio profile's app client, here because the tasks must know the client ids
            # (the Studio stack puts each client's secret into the profile's own secret).
            for profile in config.studio.user_profiles:
                client = identity.add_machine_client(self, f"StudioClient{profile}", name=f"studio-{profile}")
                self.machine_clients[profile] = CognitoMachineClient(
                    user_pool_id=identity.user_pool.user_pool_id,
                    user_pool_arn=identity.user_pool.user_pool_arn,
                    client_id=client.ref,
                    token_url=identity.token_url,
                )
        return identity, OidcSettings(
            discovery_url=identity.discovery_url,
            client_secret=identity.client_secret,
            admin_group=config.sso.oidc_admin_group,
            allowed_group=config.sso.oidc_allowed_group,
            groups_claim=groups_claim,
            machine_clients=(
                *(client.client_id for client in self.machine_clients.values()),
                *config.sso.oidc_machine_clients,
            ),
        )
