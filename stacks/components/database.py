"""MLflow's backend store: Aurora PostgreSQL Serverless v2 in isolated subnets."""

from aws_cdk import Duration, Fn, RemovalPolicy
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
        min_capacity: float,
        max_capacity: float,
        auto_pause: Duration | None,
        backup_retention: Duration,
        removal_policy: RemovalPolicy,
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, construct_id)
        retain = removal_policy != RemovalPolicy.DESTROY
        self.deletion_protection = retain

        self.security_group = closed_security_group(
            self, "SecurityGroup", vpc=vpc, description="Aurora for MLflow: reachable only from the MLflow tasks"
        )

        engine = rds.DatabaseClusterEngine.aurora_postgres(version=ENGINE_VERSION)
        # The server refuses connections without TLS; the MLflow task verifies
        # the server's certificate against the RDS CA bundle in its image.
        self.parameter_group = rds.ParameterGroup(
            self,
            "Parameters",
            engine=engine,
            description="MLflow metadata cluster: TLS required",
            parameters={"rds.force_ssl": "1"},
        )
        self.cluster = rds.DatabaseCluster(
            self,
            "Cluster",
            engine=engine,
            parameter_group=self.parameter_group,
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
            # Automated backups: the window a point-in-time restore can reach.
            backup=rds.BackupProps(retention=backup_retention),
            deletion_protection=retain,
            removal_policy=RemovalPolicy.SNAPSHOT if retain else RemovalPolicy.DESTROY,
            cloudwatch_logs_exports=["postgresql"],
            copy_tags_to_snapshot=True,
        )
        # RDS creates /aws/rds/cluster/<id>/postgresql itself on first use, so
        # no LogGroup resource can own it (an existing deployment already has
        # it, and a fixed cluster name would replace the database). A
        # LogRetention sets its retention, creating it if missing, and deletes
        # it with the stack under the destroy policy. The writer depends on it:
        # the group exists before any instance logs, and on deletion the
        # instance is gone before the group is removed.
        self.log_group_name = Fn.join("", ["/aws/rds/cluster/", self.cluster.cluster_identifier, "/postgresql"])
        self.log_retention = logs.LogRetention(
            self,
            "PostgresqlLogRetention",
            log_group_name=self.log_group_name,
            retention=log_retention,
            removal_policy=removal_policy,
        )
        writer = self.cluster.node.find_child("Writer")
        writer.node.add_dependency(self.log_retention)
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
