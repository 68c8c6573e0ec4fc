"""MLflowVpcStack: network, artifact bucket, Aurora, secrets, ECS service and ALB."""

import json
from pathlib import Path
from typing import Any

import pytest

from stacks import names
from stacks.components.tracking_service import CAPACITY_PROVIDER_STRATEGY_NONCE
from tests.stacks.helpers import (
    Template,
    as_list,
    egress_rules,
    ingress_rules,
    only,
    policy_statements,
    props,
    ref_id,
    resources,
    service_task_definition,
    statement_actions,
)
from tests.synth import DAY_TWO_VARIANT, REPO, synth_directory, synth_templates


def _subnet_types(template: Template) -> list[str]:
    return [
        next(tag["Value"] for tag in subnet["Properties"]["Tags"] if tag["Key"] == "aws-cdk:subnet-type")
        for subnet in resources(template, "AWS::EC2::Subnet").values()
    ]


def _artifact_bucket(template: Template) -> tuple[str, dict[str, Any]]:
    buckets = {
        logical_id: bucket
        for logical_id, bucket in resources(template, "AWS::S3::Bucket").items()
        if "Artifacts" in logical_id
    }
    assert len(buckets) == 1
    return next(iter(buckets.items()))


def _containers(template: Template) -> dict[str, dict[str, Any]]:
    definitions = service_task_definition(template)["ContainerDefinitions"]
    return {container["Name"]: container for container in definitions}


# --- network ---------------------------------------------------------------


def test_vpc_has_three_subnet_tiers_over_two_azs_and_one_nat(vpc_template: Template) -> None:
    assert props(vpc_template, "AWS::EC2::VPC")["CidrBlock"] == "10.40.0.0/16"
    assert sorted(_subnet_types(vpc_template)) == ["Isolated"] * 2 + ["Private"] * 2 + ["Public"] * 2
    assert len(resources(vpc_template, "AWS::EC2::NatGateway")) == 1
    # AZs come from Fn::GetAZs, not a context lookup: offline synth, no credentials.
    subnets = resources(vpc_template, "AWS::EC2::Subnet").values()
    azs = {json.dumps(subnet["Properties"]["AvailabilityZone"]) for subnet in subnets}
    assert all("Fn::GetAZs" in az for az in azs) and len(azs) == 2


def test_az_and_nat_counts_follow_configuration() -> None:
    template = synth_templates(az_count=3, nat_gateways=2)[names.VPC_STACK]
    assert sorted(_subnet_types(template)) == ["Isolated"] * 3 + ["Private"] * 3 + ["Public"] * 3
    assert len(resources(template, "AWS::EC2::NatGateway")) == 2


def test_private_subnets_reach_s3_through_a_gateway_endpoint(vpc_template: Template) -> None:
    """Presigned artifact transfers from the VPC must not pay NAT data charges."""
    endpoint = props(vpc_template, "AWS::EC2::VPCEndpoint")
    assert endpoint["VpcEndpointType"] == "Gateway"
    assert endpoint["ServiceName"] == {"Fn::Join": ["", ["com.amazonaws.", {"Ref": "AWS::Region"}, ".s3"]]}
    private_tables = {
        logical_id
        for logical_id, table in resources(vpc_template, "AWS::EC2::RouteTable").items()
        if "privateSubnet" in logical_id
    }
    assert {ref_id(table) for table in endpoint["RouteTableIds"]} == private_tables and len(private_tables) == 2


def test_flow_logs_capture_all_traffic_of_the_vpc(vpc_template: Template) -> None:
    vpc_id, _ = only(vpc_template, "AWS::EC2::VPC")
    flow_log = props(vpc_template, "AWS::EC2::FlowLog")
    assert flow_log["ResourceId"] == {"Ref": vpc_id}
    assert flow_log["TrafficType"] == "ALL"
    assert flow_log["LogDestinationType"] == "cloud-watch-logs"


# --- artifact bucket -------------------------------------------------------


def test_artifact_bucket_is_private_encrypted_versioned_and_retained(vpc_template: Template) -> None:
    _, bucket = _artifact_bucket(vpc_template)
    properties = bucket["Properties"]
    assert properties["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    encryption = properties["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert encryption["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert properties["VersioningConfiguration"] == {"Status": "Enabled"}
    assert "LoggingConfiguration" in properties
    rules = properties["LifecycleConfiguration"]["Rules"]
    assert any(rule.get("AbortIncompleteMultipartUpload", {}).get("DaysAfterInitiation") for rule in rules)
    assert bucket["DeletionPolicy"] == "Retain"


def _noncurrent_days(template: Template) -> list[int]:
    _, bucket = _artifact_bucket(template)
    rules = bucket["Properties"]["LifecycleConfiguration"]["Rules"]
    return [r["NoncurrentVersionExpiration"]["NoncurrentDays"] for r in rules if "NoncurrentVersionExpiration" in r]


def test_artifact_versions_are_kept_for_the_configured_days(vpc_template: Template) -> None:
    _, bucket = _artifact_bucket(vpc_template)
    assert bucket["Properties"]["VersioningConfiguration"] == {"Status": "Enabled"}
    assert _noncurrent_days(vpc_template) == [90]
    template = synth_templates(**DAY_TWO_VARIANT)[names.VPC_STACK]  # artifact_version_retention_days=7
    assert _noncurrent_days(template) == [7]
    assert _artifact_bucket(template)[1]["Properties"]["VersioningConfiguration"] == {"Status": "Enabled"}


def test_artifact_bucket_publishes_request_metrics(vpc_template: Template) -> None:
    _, bucket = _artifact_bucket(vpc_template)
    assert bucket["Properties"]["MetricsConfigurations"] == [{"Id": "EntireBucket"}]


def test_artifact_bucket_denies_requests_without_tls(vpc_template: Template) -> None:
    bucket_id, _ = _artifact_bucket(vpc_template)
    policies = [
        p["Properties"]
        for p in resources(vpc_template, "AWS::S3::BucketPolicy").values()
        if p["Properties"]["Bucket"] == {"Ref": bucket_id}
    ]
    assert len(policies) == 1
    denials = [
        s
        for s in policies[0]["PolicyDocument"]["Statement"]
        if s["Effect"] == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
    ]
    assert denials and denials[0]["Action"] == "s3:*"


def test_dev_removal_policy_lets_data_go(dev_templates: dict[str, Template]) -> None:
    template = dev_templates[names.VPC_STACK]
    _, bucket = _artifact_bucket(template)
    assert bucket["DeletionPolicy"] == "Delete"
    _, cluster = only(template, "AWS::RDS::DBCluster")
    assert cluster["DeletionPolicy"] == "Delete"
    assert cluster["Properties"]["DeletionProtection"] is False
    alb = props(template, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    assert {"Key": "deletion_protection.enabled", "Value": "true"} not in alb["LoadBalancerAttributes"]


# --- database --------------------------------------------------------------


def test_aurora_is_serverless_v2_postgres_encrypted_and_protected(vpc_template: Template) -> None:
    _, cluster = only(vpc_template, "AWS::RDS::DBCluster")
    properties = cluster["Properties"]
    assert properties["Engine"] == "aurora-postgresql"
    major, minor = (int(part) for part in properties["EngineVersion"].split(".")[:2])
    assert (major, minor) >= (16, 3), "auto-pause (0 ACU) needs Aurora PostgreSQL 16.3 or later"
    assert properties.get("EngineMode", "provisioned") == "provisioned", "Aurora Serverless v1 cannot be created"
    assert properties["StorageEncrypted"] is True
    assert properties["DeletionProtection"] is True
    assert properties["BackupRetentionPeriod"] >= 7
    assert cluster["DeletionPolicy"] == "Snapshot"
    assert properties["ServerlessV2ScalingConfiguration"] == {
        "MinCapacity": 0,
        "MaxCapacity": 4,
        "SecondsUntilAutoPause": 3600,
    }
    instance = props(vpc_template, "AWS::RDS::DBInstance")
    assert instance["DBInstanceClass"] == "db.serverless"
    assert instance["PubliclyAccessible"] is False


def test_aurora_refuses_connections_without_tls(vpc_template: Template) -> None:
    group_id, group = only(vpc_template, "AWS::RDS::DBClusterParameterGroup")
    assert group["Properties"]["Family"] == "aurora-postgresql16"
    assert group["Properties"]["Parameters"] == {"rds.force_ssl": "1"}
    cluster = props(vpc_template, "AWS::RDS::DBCluster")
    assert cluster["DBClusterParameterGroupName"] == {"Ref": group_id}
    # The task does not override the entrypoint's default (verify-full against the RDS bundle).
    assert "DB_SSLMODE" not in {e["Name"] for e in _containers(vpc_template)["mlflow"]["Environment"]}


def test_backup_retention_follows_configuration_under_both_removal_policies(
    vpc_template: Template, dev_templates: dict[str, Template]
) -> None:
    assert props(vpc_template, "AWS::RDS::DBCluster")["BackupRetentionPeriod"] == 7
    assert props(dev_templates[names.VPC_STACK], "AWS::RDS::DBCluster")["BackupRetentionPeriod"] == 7
    cluster = only(synth_templates(**DAY_TWO_VARIANT)[names.VPC_STACK], "AWS::RDS::DBCluster")[1]  # 35 days
    assert cluster["Properties"]["BackupRetentionPeriod"] == 35
    # Retention changes nothing about the final snapshot and deletion protection under retain.
    assert cluster["DeletionPolicy"] == "Snapshot" and cluster["Properties"]["DeletionProtection"] is True


def test_aurora_password_is_generated_into_secrets_manager(vpc_template: Template) -> None:
    _, cluster = only(vpc_template, "AWS::RDS::DBCluster")
    password = json.dumps(cluster["Properties"]["MasterUserPassword"])
    assert "{{resolve:secretsmanager:" in password


def test_aurora_lives_in_isolated_subnets(vpc_template: Template) -> None:
    isolated = {
        logical_id
        for logical_id, subnet in resources(vpc_template, "AWS::EC2::Subnet").items()
        if {"Key": "aws-cdk:subnet-type", "Value": "Isolated"} in subnet["Properties"]["Tags"]
    }
    group = props(vpc_template, "AWS::RDS::DBSubnetGroup")
    assert {ref_id(subnet) for subnet in group["SubnetIds"]} == isolated


def test_capacity_floor_above_zero_disables_auto_pause() -> None:
    template = synth_templates(aurora_min_acu=0.5)[names.VPC_STACK]
    scaling = props(template, "AWS::RDS::DBCluster")["ServerlessV2ScalingConfiguration"]
    assert scaling == {"MinCapacity": 0.5, "MaxCapacity": 4}


# --- secrets ---------------------------------------------------------------


def test_basic_auth_credentials_are_generated_json(vpc_template: Template) -> None:
    secrets = {s["Properties"].get("Name"): s for s in resources(vpc_template, "AWS::SecretsManager::Secret").values()}
    secret = secrets["mlflow-server-credentials"]
    generated = secret["Properties"]["GenerateSecretString"]
    assert json.loads(generated["SecretStringTemplate"]) == {"username": "mlflow"}
    assert generated["GenerateStringKey"] == "password"
    assert generated["PasswordLength"] >= 32
    assert "SecretString" not in secret["Properties"]
    assert secret["DeletionPolicy"] == "Retain"


def test_credentials_secret_name_is_configurable() -> None:
    template = synth_templates(credentials_secret_name="team-a/mlflow")[names.VPC_STACK]
    secret_names = [s["Properties"].get("Name") for s in resources(template, "AWS::SecretsManager::Secret").values()]
    assert "team-a/mlflow" in secret_names
    assert template["Outputs"][names.OUTPUT_CREDENTIALS_SECRET]["Value"] == "team-a/mlflow"


# --- ECS -------------------------------------------------------------------


def test_task_definition_runs_nginx_and_mlflow_per_contract(vpc_template: Template) -> None:
    task = service_task_definition(vpc_template)
    assert (task["Cpu"], task["Memory"]) == ("1024", "2048")
    assert task["RequiresCompatibilities"] == ["FARGATE"]
    assert task["RuntimePlatform"]["CpuArchitecture"] == "X86_64"
    containers = _containers(vpc_template)
    assert set(containers) == {"nginx", "mlflow"}
    # nginx publishes the only port; MLflow publishes none.
    assert containers["nginx"]["PortMappings"] == [{"ContainerPort": names.NGINX_PORT, "Protocol": "tcp"}]
    assert "PortMappings" not in containers["mlflow"]
    assert {"Condition": "START", "ContainerName": "mlflow"} in containers["nginx"]["DependsOn"]
    mlflow_env = _environment(containers["mlflow"])
    assert mlflow_env["DB_NAME"] == "mlflow"
    assert mlflow_env["DB_PORT"] == "5432"
    assert mlflow_env["MLFLOW_WORKERS"] == "2"
    bucket_id, _ = _artifact_bucket(vpc_template)
    # MLflow serves the artifacts from its own prefix of the bucket.
    destination = {"Fn::Join": ["", ["s3://", {"Ref": bucket_id}, "/mlflow-artifacts"]]}
    assert mlflow_env["MLFLOW_ARTIFACTS_DESTINATION"] == destination
    assert "MLFLOW_ARTIFACT_ROOT" not in mlflow_env
    nginx_env = _environment(containers["nginx"])
    assert nginx_env["MLFLOW_UPSTREAM"] == f"127.0.0.1:{names.MLFLOW_PORT}"
    # The same mode reaches both containers; shared mode sets nothing of the auth app.
    assert mlflow_env["MLFLOW_AUTH_MODE"] == nginx_env["MLFLOW_AUTH_MODE"] == "shared"
    auth_app = [name for name in mlflow_env if name.startswith(("MLFLOW_AUTH_", "MLFLOW_FLASK"))]
    assert auth_app == ["MLFLOW_AUTH_MODE"]


def _environment(container: dict[str, Any]) -> dict[str, Any]:
    return {e["Name"]: e["Value"] for e in container.get("Environment", [])}


def _secret_sources(container: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Variable -> (secret logical id, JSON field or "" for the whole secret string)."""
    found = {}
    for secret in container.get("Secrets", []):
        value = secret["ValueFrom"]
        if "Ref" in value:
            found[secret["Name"]] = (value["Ref"], "")
        else:
            parts = value["Fn::Join"][1]
            found[secret["Name"]] = (ref_id(parts[0]), parts[1].strip(":"))
    return found


def _secret_id(template: Template, name: str) -> str:
    (logical_id,) = [
        logical_id
        for logical_id, secret in resources(template, "AWS::SecretsManager::Secret").items()
        if secret["Properties"].get("Name") == name
    ]
    return logical_id


def test_accounts_mode_runs_mlflows_auth_app_with_the_admin_and_a_shared_session_key(
    accounts_templates: dict[str, Template],
) -> None:
    template = accounts_templates[names.VPC_STACK]
    containers = _containers(template)
    mlflow_env, nginx_env = _environment(containers["mlflow"]), _environment(containers["nginx"])
    assert mlflow_env["MLFLOW_AUTH_MODE"] == nginx_env["MLFLOW_AUTH_MODE"] == "accounts"
    assert mlflow_env["MLFLOW_AUTH_DEFAULT_PERMISSION"] == "READ"
    assert mlflow_env["MLFLOW_AUTH_DB_NAME"] == "mlflow_auth"
    credentials = _secret_id(template, "mlflow-server-credentials")
    ((session_key, session_secret),) = [
        (logical_id, secret)
        for logical_id, secret in resources(template, "AWS::SecretsManager::Secret").items()
        if "Flask" in secret["Properties"]["Description"]
    ]
    database, _ = only(template, "AWS::SecretsManager::SecretTargetAttachment")
    assert _secret_sources(containers["mlflow"]) == {
        "DB_USERNAME": (database, "username"),
        "DB_PASSWORD": (database, "password"),
        "MLFLOW_AUTH_ADMIN_USERNAME": (credentials, "username"),
        "MLFLOW_AUTH_ADMIN_PASSWORD": (credentials, "password"),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": (session_key, ""),
    }
    # nginx checks nothing itself in this mode, so it holds no credential.
    assert "Secrets" not in containers["nginx"]
    generated = session_secret["Properties"]["GenerateSecretString"]
    assert generated["PasswordLength"] >= 64 and "SecretString" not in session_secret["Properties"]
    # Only sessions of running tasks depend on it: it goes with the stack.
    assert session_secret["DeletionPolicy"] == "Delete"
    # The admin keeps the user and password it had as the shared login.
    admin = template["Resources"][credentials]["Properties"]["GenerateSecretString"]
    assert json.loads(admin["SecretStringTemplate"]) == {"username": "mlflow"}
    # make rotate-password reads the mode here (and leaves the admin's password to MLflow).
    assert template["Outputs"][names.OUTPUT_AUTH_MODE]["Value"] == "accounts"


def test_default_permission_reaches_mlflow() -> None:
    template = synth_templates(auth_mode="accounts", default_permission="NO_PERMISSIONS")[names.VPC_STACK]
    assert _environment(_containers(template)["mlflow"])["MLFLOW_AUTH_DEFAULT_PERMISSION"] == "NO_PERMISSIONS"


def test_containers_have_read_only_roots_and_own_scratch(vpc_template: Template) -> None:
    containers = _containers(vpc_template)
    volumes = service_task_definition(vpc_template)["Volumes"]
    assert sorted(v["Name"] for v in volumes) == ["mlflow-tmp", "nginx-tmp"]
    # Task-local (bind mount) volumes: no host path, no EFS, nothing outlives the task.
    assert all(set(v) == {"Name"} for v in volumes)
    for name, container in containers.items():
        assert container["ReadonlyRootFilesystem"] is True, name
        assert container["MountPoints"] == [{"ContainerPath": "/tmp", "ReadOnly": False, "SourceVolume": f"{name}-tmp"}]


def test_secrets_reach_containers_only_as_ecs_secrets(vpc_template: Template) -> None:
    containers = _containers(vpc_template)
    credentials = _secret_id(vpc_template, "mlflow-server-credentials")
    assert _secret_sources(containers["nginx"]) == {
        "MLFLOW_USERNAME": (credentials, "username"),
        "MLFLOW_PASSWORD": (credentials, "password"),
    }
    secret_names = {name: {s["Name"] for s in container.get("Secrets", [])} for name, container in containers.items()}
    assert secret_names == {
        "nginx": {"MLFLOW_USERNAME", "MLFLOW_PASSWORD"},
        "mlflow": {"DB_USERNAME", "DB_PASSWORD"},
    }
    for container in containers.values():
        for variable in container.get("Environment", []):
            assert not any(word in variable["Name"] for word in ("PASSWORD", "SECRET", "USERNAME"))
        for secret in container["Secrets"]:
            # JSON-key references into Secrets Manager: ARN:field::
            value_from = json.dumps(secret["ValueFrom"])
            assert ":username::" in value_from or ":password::" in value_from


def _audit_group(template: Template) -> str:
    (logical_id,) = [key for key in resources(template, "AWS::Logs::LogGroup") if "AuditLogs" in key]
    return logical_id


def test_logs_go_to_groups_with_retention(vpc_template: Template) -> None:
    groups = resources(vpc_template, "AWS::Logs::LogGroup")
    audit = _audit_group(vpc_template)
    assert groups and all(g["Properties"]["RetentionInDays"] == 30 for key, g in groups.items() if key != audit)
    for container in _containers(vpc_template).values():
        logging = container["LogConfiguration"]
        assert logging["LogDriver"] == "awslogs"
        assert ref_id(logging["Options"]["awslogs-group"]) in groups


def test_the_first_task_runs_on_regular_fargate_and_the_ones_beyond_it_on_spot(vpc_template: Template) -> None:
    service = only(vpc_template, "AWS::ECS::Service")[1]
    association_id, association = only(vpc_template, "AWS::ECS::ClusterCapacityProviderAssociations")
    assert "LaunchType" not in service["Properties"]  # ECS refuses a launch type beside a strategy
    assert service["Properties"]["CapacityProviderStrategy"] == [
        {"CapacityProvider": "FARGATE", "Base": 1, "Weight": 1},
        {"CapacityProvider": "FARGATE_SPOT", "Weight": 1000},
    ]
    cluster_id = only(vpc_template, "AWS::ECS::Cluster")[0]
    assert association["Properties"]["Cluster"] == {"Ref": cluster_id}
    assert sorted(association["Properties"]["CapacityProviders"]) == ["FARGATE", "FARGATE_SPOT"]
    # The strategy names providers the cluster must already have when the service is created.
    assert association_id in service["DependsOn"]
    # A deployed service moves from the plain launch type to a strategy only with a new deployment.
    assert service["Properties"]["ForceNewDeployment"] == {
        "EnableForceNewDeployment": True,
        "ForceNewDeploymentNonce": CAPACITY_PROVIDER_STRATEGY_NONCE,
    }


def test_on_demand_task_count_at_the_ceiling_keeps_every_task_off_spot(vpc_template: Template) -> None:
    template = synth_templates(**DAY_TWO_VARIANT)[names.VPC_STACK]  # on_demand_task_count=4, max_task_count=4
    service = only(template, "AWS::ECS::Service")[1]["Properties"]
    # Still a strategy, so that turning Spot on or off is a change ECS makes in place.
    assert service["CapacityProviderStrategy"] == [{"CapacityProvider": "FARGATE", "Weight": 1}]
    assert "LaunchType" not in service
    assert service["ForceNewDeployment"] == props(vpc_template, "AWS::ECS::Service")["ForceNewDeployment"]


def test_service_is_private_with_circuit_breaker_and_cpu_scaling(vpc_template: Template) -> None:
    service = props(vpc_template, "AWS::ECS::Service")
    assert service["DesiredCount"] == 2
    assert service["DeploymentConfiguration"]["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}
    network = service["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert network["AssignPublicIp"] == "DISABLED"
    private = {
        logical_id
        for logical_id, subnet in resources(vpc_template, "AWS::EC2::Subnet").items()
        if {"Key": "aws-cdk:subnet-type", "Value": "Private"} in subnet["Properties"]["Tags"]
    }
    assert {ref_id(s) for s in network["Subnets"]} == private and len(private) == 2
    assert service["LoadBalancers"][0]["ContainerName"] == "nginx"
    assert service["LoadBalancers"][0]["ContainerPort"] == names.NGINX_PORT

    target = props(vpc_template, "AWS::ApplicationAutoScaling::ScalableTarget")
    assert (target["MinCapacity"], target["MaxCapacity"]) == (2, 4)
    policy = props(vpc_template, "AWS::ApplicationAutoScaling::ScalingPolicy")
    tracking = policy["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["PredefinedMetricSpecification"]["PredefinedMetricType"] == "ECSServiceAverageCPUUtilization"
    assert tracking["TargetValue"] == 60


def test_task_counts_and_sizes_follow_configuration() -> None:
    template = synth_templates(
        desired_task_count=1, min_task_count=1, max_task_count=3, task_cpu=2048, task_memory_mib=4096
    )[names.VPC_STACK]
    assert props(template, "AWS::ECS::Service")["DesiredCount"] == 1
    target = props(template, "AWS::ApplicationAutoScaling::ScalableTarget")
    assert (target["MinCapacity"], target["MaxCapacity"]) == (1, 3)
    task = service_task_definition(template)
    assert (task["Cpu"], task["Memory"]) == ("2048", "4096")


# --- load balancer ---------------------------------------------------------


def test_alb_is_internal_and_checks_elb_status_on_nginx(vpc_template: Template) -> None:
    alb = props(vpc_template, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    assert alb["Scheme"] == "internal"
    assert {"Key": "routing.http.drop_invalid_header_fields.enabled", "Value": "true"} in alb["LoadBalancerAttributes"]
    # removal_policy=retain (the default): the load balancer cannot be deleted by accident.
    assert {"Key": "deletion_protection.enabled", "Value": "true"} in alb["LoadBalancerAttributes"]
    group = props(vpc_template, "AWS::ElasticLoadBalancingV2::TargetGroup")
    assert group["Port"] == names.NGINX_PORT
    assert group["TargetType"] == "ip"
    assert group["HealthCheckPath"] == "/elb-status"
    assert group["Matcher"] == {"HttpCode": "200"}
    assert props(vpc_template, "AWS::ElasticLoadBalancingV2::Listener")["Port"] == 80


# --- security groups -------------------------------------------------------


def _group_id(template: Template, description_start: str) -> str:
    matches = [
        logical_id
        for logical_id, group in resources(template, "AWS::EC2::SecurityGroup").items()
        if group["Properties"]["GroupDescription"].startswith(description_start)
    ]
    assert len(matches) == 1, matches
    return matches[0]


def test_only_the_alb_reaches_the_task_and_only_on_nginx_port(vpc_template: Template) -> None:
    task_sg = _group_id(vpc_template, "MLflow tasks")
    alb_sg = _group_id(vpc_template, "Internal MLflow ALB")
    rules = [r for r in ingress_rules(vpc_template) if ref_id(r.get("GroupId", {"Ref": ""})) == task_sg]
    assert [(ref_id(r["SourceSecurityGroupId"]), r["FromPort"], r["ToPort"]) for r in rules] == [
        (alb_sg, names.NGINX_PORT, names.NGINX_PORT)
    ]


def test_only_the_task_reaches_the_database(vpc_template: Template) -> None:
    task_sg = _group_id(vpc_template, "MLflow tasks")
    db_sg = _group_id(vpc_template, "Aurora for MLflow")
    rules = [r for r in ingress_rules(vpc_template) if ref_id(r.get("GroupId", {"Ref": ""})) == db_sg]
    assert [(ref_id(r["SourceSecurityGroupId"]), r["FromPort"]) for r in rules] == [(task_sg, 5432)]


def test_task_egress_is_https_and_the_database_only(vpc_template: Template) -> None:
    task = vpc_template["Resources"][_group_id(vpc_template, "MLflow tasks")]["Properties"]
    ports = sorted((r["FromPort"], r["ToPort"]) for r in task["SecurityGroupEgress"])
    standalone = [
        r
        for r in egress_rules(vpc_template)
        if "GroupId" in r and ref_id(r["GroupId"]) == _group_id(vpc_template, "MLflow tasks")
    ]
    assert ports == [(443, 443)]
    assert [(r["FromPort"], ref_id(r["DestinationSecurityGroupId"])) for r in standalone] == [
        (5432, _group_id(vpc_template, "Aurora for MLflow"))
    ]


def test_alb_has_no_ingress_in_its_own_stack(vpc_template: Template) -> None:
    """The VPC link's rule is added by the gateway stack; nothing else may open the ALB."""
    alb_sg = _group_id(vpc_template, "Internal MLflow ALB")
    assert [r for r in ingress_rules(vpc_template) if ref_id(r.get("GroupId", {"Ref": ""})) == alb_sg] == []


def test_no_ingress_from_anywhere_and_mlflow_port_never_open(templates: dict[str, Template]) -> None:
    for template in templates.values():
        for rule in ingress_rules(template):
            assert rule.get("CidrIp") != "0.0.0.0/0"
            assert rule.get("CidrIpv6") != "::/0"
            assert not rule.get("FromPort", 0) <= names.MLFLOW_PORT <= rule.get("ToPort", -1) or (
                rule.get("FromPort") == 0 and rule.get("ToPort") == 65535 and "SourceSecurityGroupId" in rule
            )


def test_mlflow_port_is_in_no_security_group_rule_of_the_service(vpc_template: Template) -> None:
    for rule in ingress_rules(vpc_template) + egress_rules(vpc_template):
        assert rule.get("FromPort") != names.MLFLOW_PORT and rule.get("ToPort") != names.MLFLOW_PORT


# --- IAM -------------------------------------------------------------------


def _role_statements(template: Template, role_fragment: str) -> list[dict[str, Any]]:
    policies = [
        p["Properties"]
        for p in resources(template, "AWS::IAM::Policy").values()
        if any(role_fragment in ref_id(r) for r in p["Properties"]["Roles"])
    ]
    return [s for p in policies for s in p["PolicyDocument"]["Statement"]]


def test_no_container_sees_a_secret_as_plain_environment_in_any_mode(
    accounts_templates: dict[str, Template],
) -> None:
    for container in _containers(accounts_templates[names.VPC_STACK]).values():
        for variable in container.get("Environment", []):
            assert not any(word in variable["Name"] for word in ("PASSWORD", "SECRET", "USERNAME")), variable


def test_execution_role_reads_admin_database_and_session_secrets_in_accounts_mode(
    accounts_templates: dict[str, Template],
) -> None:
    template = accounts_templates[names.VPC_STACK]
    statements = _role_statements(template, "TaskDefinitionExecutionRole")
    read = {
        json.dumps(r)
        for s in statements
        if any("secretsmanager" in a for a in as_list(s["Action"]))
        for r in as_list(s["Resource"])
    }
    assert len(read) == 3
    assert any(_secret_id(template, "mlflow-server-credentials") in r for r in read)


def test_task_role_touches_only_the_artifact_bucket_and_writes_only_to_the_audit_group(
    vpc_template: Template,
) -> None:
    bucket_id, _ = _artifact_bucket(vpc_template)
    statements = _role_statements(vpc_template, "TrackingTaskRole")
    audit = {frozenset({"logs:CreateLogStream", "logs:PutLogEvents"})}
    assert {frozenset(as_list(s["Action"])) for s in statements} == {
        frozenset({"s3:ListBucket", "s3:GetBucketLocation"}),
        frozenset({"s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"}),
        *audit,
    }
    for statement in statements:
        owner = _audit_group(vpc_template) if frozenset(as_list(statement["Action"])) in audit else bucket_id
        for resource in as_list(statement["Resource"]):
            assert owner in json.dumps(resource)


# --- the audit trail: its own log group -------------------------------------


@pytest.mark.parametrize(("context", "days"), [({}, 365), ({"audit_log_retention_days": "3653"}, 3653)])
def test_audit_lines_have_their_own_group_kept_as_configured(context: dict[str, str], days: int) -> None:
    template = synth_templates(**context)[names.VPC_STACK]
    audit = _audit_group(template)
    assert resources(template, "AWS::Logs::LogGroup")[audit]["Properties"]["RetentionInDays"] == days
    # The MLflow processes send their audit lines there; no container's output goes there.
    environment = _containers(template)["mlflow"]["Environment"]
    assert {"Name": "MLFLOW_AUDIT_LOG_GROUP", "Value": {"Ref": audit}} in environment
    for container in _containers(template).values():
        assert ref_id(container["LogConfiguration"]["Options"]["awslogs-group"]) != audit
    assert template["Outputs"][names.OUTPUT_AUDIT_LOG_GROUP]["Value"] == {"Ref": audit}


def test_the_audit_group_is_retained_unless_the_stack_is_for_dev(
    vpc_template: Template, dev_templates: dict[str, Template]
) -> None:
    kept = resources(vpc_template, "AWS::Logs::LogGroup")[_audit_group(vpc_template)]
    dev = dev_templates[names.VPC_STACK]
    gone = resources(dev, "AWS::Logs::LogGroup")[_audit_group(dev)]
    assert (kept["DeletionPolicy"], gone["DeletionPolicy"]) == ("Retain", "Delete")


def test_execution_role_reads_only_the_two_secrets(vpc_template: Template) -> None:
    statements = _role_statements(vpc_template, "TaskDefinitionExecutionRole")
    secret_statements = [s for s in statements if any("secretsmanager" in a for a in as_list(s["Action"]))]
    read = {json.dumps(r) for s in secret_statements for r in as_list(s["Resource"])}
    assert all(
        set(as_list(s["Action"])) <= {"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"}
        for s in secret_statements
    )
    credentials_id = next(
        logical_id
        for logical_id, s in resources(vpc_template, "AWS::SecretsManager::Secret").items()
        if s["Properties"].get("Name") == "mlflow-server-credentials"
    )
    # The attachment's Ref is the database secret's ARN (with host, port and dbname added).
    database_secret_id, _ = only(vpc_template, "AWS::SecretsManager::SecretTargetAttachment")
    assert len(read) == 2
    assert any(credentials_id in r for r in read) and any(database_secret_id in r for r in read)


def test_no_statement_allows_every_action_or_listsecrets(templates: dict[str, Template]) -> None:
    for template in templates.values():
        for statement in policy_statements(template):
            actions = statement_actions(statement)
            assert "*" not in actions and "s3:*" not in actions or statement["Effect"] == "Deny"
            assert "secretsmanager:ListSecrets" not in actions


def test_artifact_bucket_and_secret_are_published(vpc_template: Template) -> None:
    bucket_id, _ = _artifact_bucket(vpc_template)
    assert vpc_template["Outputs"][names.OUTPUT_ARTIFACT_BUCKET]["Value"] == {"Ref": bucket_id}
    parameter = props(vpc_template, "AWS::SSM::Parameter")
    assert parameter["Name"] == names.SSM_ARTIFACT_BUCKET
    assert parameter["Value"] == {"Ref": bucket_id}


def test_rotation_outputs_name_the_service_and_the_auth_mode(vpc_template: Template) -> None:
    """`make rotate-password` restarts this cluster's service and needs to know how clients sign in."""
    outputs = vpc_template["Outputs"]
    cluster_id, _ = only(vpc_template, "AWS::ECS::Cluster")
    service_id, _ = only(vpc_template, "AWS::ECS::Service")
    assert outputs[names.OUTPUT_ECS_CLUSTER]["Value"] == {"Ref": cluster_id}
    assert outputs[names.OUTPUT_ECS_SERVICE]["Value"] == {"Fn::GetAtt": [service_id, "Name"]}
    assert outputs[names.OUTPUT_AUTH_MODE]["Value"] == "shared"
    assert outputs[names.OUTPUT_CREDENTIALS_SECRET]["Value"] == "mlflow-server-credentials"


# --- MLflow 3's AI gateway: off unless asked for ----------------------------


@pytest.mark.parametrize(("context", "expected"), [({}, "false"), ({"ai_gateway": "true"}, "true")])
def test_the_ai_gateway_is_off_unless_the_setting_turns_it_on(context: dict[str, str], expected: str) -> None:
    template = synth_templates(**context)[names.VPC_STACK]
    containers = _containers(template)
    assert _environment(containers["mlflow"])["MLFLOW_ENABLE_AI_GATEWAY"] == expected
    assert "MLFLOW_ENABLE_AI_GATEWAY" not in _environment(containers["nginx"])


def _image_platforms(**overrides: Any) -> set[str]:
    manifest = json.loads((synth_directory(**overrides) / "MLflowVpcStack.assets.json").read_text())
    return {image["source"]["platform"] for image in manifest["dockerImages"].values()}


def test_each_image_is_built_from_its_sources_without_bytecode() -> None:
    """The tests import docker/mlflow's modules (bytecode caches appear beside them): the image's
    context, and so its hash, holds the tracked files only, whatever ran in the tree before a synth."""
    directory = synth_directory()
    manifest = json.loads((directory / "MLflowVpcStack.assets.json").read_text())
    for image in manifest["dockerImages"].values():
        name = image["displayName"].split("/")[2]  # Tracking/TaskDefinition/<container>/AssetImage
        source = REPO / "docker" / name
        staged = directory / image["source"]["directory"]

        def files(root: Path) -> set[str]:
            return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}

        expected = {f for f in files(source) if "__pycache__" not in f and not f.endswith(".pyc")}
        assert files(staged) == expected, name


@pytest.mark.parametrize(
    ("overrides", "ecs_name", "platform"),
    [({}, "X86_64", "linux/amd64"), ({"task_architecture": "arm64"}, "ARM64", "linux/arm64")],
    ids=["default", "arm64"],
)
def test_the_task_and_both_images_share_one_architecture(overrides: dict, ecs_name: str, platform: str) -> None:
    template = synth_templates(**overrides)["MLflowVpcStack"]
    tasks = resources(template, "AWS::ECS::TaskDefinition")  # the service's and the gc task's
    assert {task["Properties"]["RuntimePlatform"]["CpuArchitecture"] for task in tasks.values()} == {ecs_name}
    assert _image_platforms(**overrides) == {platform}
