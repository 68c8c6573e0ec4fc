"""The scheduled garbage collection: MLflow's gc in a task of its own, with the service's image and roles.

Deleting a run, experiment or logged model in MLflow only marks it; until gc
runs, its rows stay in Aurora and its artifacts in S3 (docs/operations.md,
"Garbage collection"). The task runs ``entrypoint.py gc --apply`` from the
mlflow image: the same database and bucket settings as the server, the
database password as an ECS secret, the server's task role (it may already
delete artifacts) and execution role, so gc gets no credential of its own.
It runs on the service's cluster, in its subnets, behind its security group
(HTTPS out and the database, nothing in).
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_scheduler_targets as scheduler_targets
from constructs import Construct

from stacks.components.tracking_service import SCRATCH_PATH

# MLflow's imports and one pass over the tables; no server, no workers.
GC_CPU = 512
GC_MEMORY_MIB = 2048


class ScheduledGarbageCollection(Construct):
    """A Fargate task definition running gc, and the EventBridge Scheduler schedule that starts it."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        schedule: str,
        older_than_days: int,
        delete_orphans: bool,
        cluster: ecs.ICluster,
        subnets: ec2.SubnetSelection,
        security_group: ec2.ISecurityGroup,
        image: ecs.ContainerImage,
        runtime_platform: ecs.RuntimePlatform,
        task_role: iam.IRole,
        execution_role: iam.IRole,
        environment: Mapping[str, str],
        secrets: Mapping[str, ecs.Secret],
        log_retention: logs.RetentionDays,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.task_definition = ecs.FargateTaskDefinition(
            self,
            "TaskDefinition",
            cpu=GC_CPU,
            memory_limit_mib=GC_MEMORY_MIB,
            task_role=task_role,
            execution_role=execution_role,
            runtime_platform=runtime_platform,
        )
        self.log_group = logs.LogGroup(self, "Logs", retention=log_retention, removal_policy=removal_policy)
        self.command = ["gc", "--apply", *(["--delete-orphans"] if delete_orphans else [])]
        self.container = self.task_definition.add_container(
            "gc",
            image=image,
            essential=True,
            command=self.command,
            environment={**environment, "GC_OLDER_THAN_DAYS": str(older_than_days)},
            secrets=dict(secrets),
            logging=ecs.LogDrivers.aws_logs(stream_prefix="gc", log_group=self.log_group),
            readonly_root_filesystem=True,
        )
        # The image's one writable place, as in the service's task.
        self.task_definition.add_volume(name="gc-tmp")
        self.container.add_mount_points(
            ecs.MountPoint(container_path=SCRATCH_PATH, source_volume="gc-tmp", read_only=False)
        )
        # Starts this task definition and nothing else (the target adds exactly those grants).
        self.scheduler_role = iam.Role(
            self,
            "SchedulerRole",
            assumed_by=iam.ServicePrincipal(
                "scheduler.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": Stack.of(self).account}}
            ),
            description="MLflow gc schedule: runs the gc task definition, passing it its two roles",
        )
        self.schedule = scheduler.Schedule(
            self,
            "Schedule",
            schedule=scheduler.ScheduleExpression.expression(schedule),
            description="MLflow: gc removes deleted runs, experiments and logged models and their artifacts",
            target=scheduler_targets.EcsRunFargateTask(
                cluster,
                task_definition=self.task_definition,
                vpc_subnets=subnets,
                security_groups=[security_group],
                assign_public_ip=False,
                role=self.scheduler_role,
                # A run that cannot start within the hour waits for the next one.
                retry_attempts=2,
                max_event_age=Duration.hours(1),
            ),
        )
