"""What `cdk destroy --all` does with each removal policy, as the README's Teardown section says.

retain (default): the Aurora cluster is protected from deletion while it
lives; on stack deletion a custom resource lifts the protection just before
CloudFormation deletes the cluster with a final snapshot, so the VPC can go
too. Buckets, secrets, log groups and the serving-image repository are kept.
destroy: nothing is kept, including the log groups of the database and of
every Lambda function.
"""

import pytest

from stacks import names
from stacks.components.deletion_protection_release import RESOURCE_TYPE
from tests.stacks.helpers import Template, only, ref_id, render, resources

# What the README's Teardown section lists as kept under removal_policy=retain.
KEPT_UNDER_RETAIN = {
    "AWS::S3::Bucket": 2,  # artifacts and their access logs
    "AWS::SecretsManager::Secret": 2,  # MLflow credentials and the database password
    "AWS::ECR::Repository": 1,  # mlflow-pyfunc
}


def _kept(templates: dict[str, Template]) -> dict[str, list[str]]:
    """Resource type -> logical ids whose DeletionPolicy keeps something after the stack is gone."""
    kept: dict[str, list[str]] = {}
    for template in templates.values():
        for logical_id, resource in template["Resources"].items():
            if resource.get("DeletionPolicy", "Delete") != "Delete":
                kept.setdefault(resource["Type"], []).append(logical_id)
    return kept


def test_retain_keeps_data_and_a_final_snapshot_of_the_database(templates: dict[str, Template]) -> None:
    kept = _kept(templates)
    for resource_type, count in KEPT_UNDER_RETAIN.items():
        assert len(kept.pop(resource_type)) == count, resource_type
    log_groups = kept.pop("AWS::Logs::LogGroup")
    assert len(log_groups) == sum(len(resources(t, "AWS::Logs::LogGroup")) for t in templates.values())
    (cluster_id,) = kept.pop("AWS::RDS::DBCluster")
    assert kept == {}, f"kept but not documented: {kept}"
    cluster = templates[names.VPC_STACK]["Resources"][cluster_id]
    assert cluster["DeletionPolicy"] == cluster["UpdateReplacePolicy"] == "Snapshot"


def test_retain_protects_the_cluster_and_releases_it_only_through_the_stack(vpc_template: Template) -> None:
    cluster_id, cluster = only(vpc_template, "AWS::RDS::DBCluster")
    assert cluster["Properties"]["DeletionProtection"] is True
    assert cluster["Properties"]["DBClusterIdentifier"] == names.DATABASE_CLUSTER
    release_id, release = only(vpc_template, RESOURCE_TYPE)
    assert ref_id(release["Properties"]["ClusterIdentifier"]) == cluster_id
    # Deleted before the cluster (Ref) and its writer instance (DependsOn): dependants go first.
    writer_id, _ = only(vpc_template, "AWS::RDS::DBInstance")
    assert release["DependsOn"] == [writer_id]

    function = vpc_template["Resources"][ref_id(release["Properties"]["ServiceToken"])]
    assert function["Properties"]["Handler"] == "index.handler"
    assert "def handler(event" in function["Properties"]["Code"]["ZipFile"]
    role = vpc_template["Resources"][ref_id(function["Properties"]["Role"])]
    statements = [s for p in role["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]]
    granted = {s["Sid"]: (s["Action"], render(s["Resource"])) for s in statements}
    assert granted["ReadOwnStackStatus"] == ("cloudformation:DescribeStacks", "${AWS::StackId}")
    assert granted["ModifyTheCluster"] == (
        "rds:ModifyDBCluster",
        "arn:${AWS::Partition}:rds:${AWS::Region}:${AWS::AccountId}:cluster:${%s}" % cluster_id,
    )
    assert set(granted) == {"ReadOwnStackStatus", "ModifyTheCluster", "WriteOwnLogs"}
    assert "ManagedPolicyArns" not in role["Properties"]


def test_destroy_keeps_nothing(dev_templates: dict[str, Template]) -> None:
    assert _kept(dev_templates) == {}
    template = dev_templates[names.VPC_STACK]
    _, cluster = only(template, "AWS::RDS::DBCluster")
    assert cluster["Properties"]["DeletionProtection"] is False
    assert resources(template, RESOURCE_TYPE) == {}
    for bucket_id in resources(template, "AWS::S3::Bucket"):
        emptiers = [
            r for r in resources(template, "Custom::S3AutoDeleteObjects").values()
            if ref_id(r["Properties"]["BucketName"]) == bucket_id
        ]  # fmt: skip
        assert len(emptiers) == 1, f"{bucket_id} would not be empty, so CloudFormation could not delete it"


@pytest.mark.parametrize("removal_policy", ["retain", "destroy"])
def test_every_log_group_belongs_to_a_stack(
    removal_policy: str, templates: dict[str, Template], dev_templates: dict[str, Template]
) -> None:
    """Log groups AWS would create on first use (Lambda's, RDS's) are owned by the stack instead."""
    chosen = templates if removal_policy == "retain" else dev_templates
    expected = "Retain" if removal_policy == "retain" else "Delete"
    for template in chosen.values():
        groups = resources(template, "AWS::Logs::LogGroup")
        assert all(group["DeletionPolicy"] == expected for group in groups.values())
        assert all(group["Properties"]["RetentionInDays"] == 30 for group in groups.values())
        for function_id, function in resources(template, "AWS::Lambda::Function").items():
            log_group = function["Properties"].get("LoggingConfig", {}).get("LogGroup")
            assert log_group and ref_id(log_group) in groups, f"{function_id} logs to a group no stack owns"
        assert resources(template, "Custom::LogRetention") == {}, "a LogRetention group is left behind"
        for cluster_id, cluster in resources(template, "AWS::RDS::DBCluster").items():
            names_of_groups = {render(g["Properties"].get("LogGroupName", "")): gid for gid, g in groups.items()}
            for log_type in cluster["Properties"]["EnableCloudwatchLogsExports"]:
                name = f"/aws/rds/cluster/{cluster['Properties']['DBClusterIdentifier']}/{log_type}"
                assert name in names_of_groups, f"{cluster_id} would log to {name}, which no stack owns"
                # Created before the cluster writes to it, deleted after the cluster is gone.
                assert names_of_groups[name] in cluster["DependsOn"]
