"""MLflow's backend store: Aurora PostgreSQL Serverless v2 in isolated subnets."""

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from constructs import Construct

from stacks.components.deletion_protection_release import DeletionProtectionRelease
from stacks.components.security_groups import closed_security_group

# Serverless v2 with auto-pause (0 ACU) needs 16.3 or later in the 16 line.
ENGINE_VERSION = rds.AuroraPostgresEngineVersion.VER_16_9
POSTGRES_PORT = 5432


class MetadataDatabase(Construct):
    """Aurora Serverless v2 cluster whose credentials are generated into Secrets Manager.

    Its security group starts with no rules: whoever needs the database opens
    a path through ``cluster.connections``. The isolated subnets have no route
    to or from the internet.

    On stack deletion: with ``RemovalPolicy.DESTROY`` the cluster goes; with
    any other policy it is protected from deletion while it lives and deleted
    with a final snapshot when the stack is deleted (a running cluster kept
    behind would hold network interfaces in the VPC and keep costing). Its
    password secret and PostgreSQL log group follow the removal policy.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        vpc: ec2.IVpc,
        subnets: ec2.SubnetSelection,
        database_name: str,
        cluster_identifier: str,
        min_capacity: float,
        max_capacity: float,
        auto_pause: Duration | None,
        removal_policy: RemovalPolicy,
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, construct_id)
        retain = removal_policy != RemovalPolicy.DESTROY
        self.deletion_protection = retain

        self.security_group = closed_security_group(
            self, "SecurityGroup", vpc=vpc, description="Aurora for MLflow: reachable only from the MLflow tasks"
        )

        # Owned here (not by RDS or a LogRetention function) so that it
        # follows the removal policy; it exists before the cluster writes to
        # it, hence the fixed cluster identifier in its name.
        self.log_group = logs.LogGroup(
            self,
            "PostgresqlLogs",
            log_group_name=f"/aws/rds/cluster/{cluster_identifier}/postgresql",
            retention=log_retention,
            removal_policy=removal_policy,
        )

        self.cluster = rds.DatabaseCluster(
            self,
            "Cluster",
            cluster_identifier=cluster_identifier,
            engine=rds.DatabaseClusterEngine.aurora_postgres(version=ENGINE_VERSION),
            # The generated password may hold URL-special characters; the
            # mlflow entrypoint URL-encodes it when it builds the database URI.
            credentials=rds.Credentials.from_generated_secret("mlflow_admin"),
            default_database_name=database_name,
            port=POSTGRES_PORT,
            writer=rds.ClusterInstance.serverless_v2("Writer", publicly_accessible=False),
            serverless_v2_min_capacity=min_capacity,
            serverless_v2_max_capacity=max_capacity,
            serverless_v2_auto_pause_duration=auto_pause,
            vpc=vpc,
            vpc_subnets=subnets,
            security_groups=[self.security_group],
            storage_encrypted=True,
            backup=rds.BackupProps(retention=Duration.days(7 if retain else 1)),
            deletion_protection=retain,
            removal_policy=RemovalPolicy.SNAPSHOT if retain else RemovalPolicy.DESTROY,
            cloudwatch_logs_exports=["postgresql"],
            copy_tags_to_snapshot=True,
        )
        cluster_resource = self.cluster.node.default_child
        assert isinstance(cluster_resource, rds.CfnDBCluster)
        cluster_resource.node.add_dependency(self.log_group)
        self.cluster_identifier = cluster_identifier
        self.protection_release = None
        if retain:
            self.protection_release = DeletionProtectionRelease(
                self,
                "ProtectionRelease",
                cluster=self.cluster,
                log_retention=log_retention,
                removal_policy=removal_policy,
            )
        if self.cluster.secret is None:  # pragma: no cover - generated credentials always make one
            raise RuntimeError("Aurora cluster was created without a credentials secret")
        # The attachment (host, port, dbname filled in) is what the task reads.
        self.secret = self.cluster.secret
        secret_resource = self.cluster.node.find_child("Secret")
        assert isinstance(secret_resource, rds.DatabaseSecret)
        self.secret_resource = secret_resource
        # Kept with the snapshot: restoring it needs the password it was taken with.
        self.secret_resource.apply_removal_policy(removal_policy)
        self.port = POSTGRES_PORT
        self.hostname = self.cluster.cluster_endpoint.hostname
