"""The upgrade gate in the template: where it stands around the ECS service, and what its role may do."""

from typing import Any

import pytest

from stacks.components.upgrade_gate import RESOURCE_TYPE
from stacks.mlflow_version import pinned_mlflow_version
from tests.stacks.helpers import as_list, only, render, resources
from tests.synth import Template

CLUSTER = "${TrackingClusterFD7EA43B}"


def _gates(template: Template) -> dict[str, tuple[str, dict[str, Any]]]:
    """Step -> (logical id, resource)."""
    return {
        resource["Properties"]["Step"]: (logical_id, resource)
        for logical_id, resource in resources(template, RESOURCE_TYPE).items()
    }


def _depends_on(template: Template, logical_id: str) -> set[str]:
    """Everything a resource waits for: DependsOn plus the resources its properties reference."""
    resource = template["Resources"][logical_id]
    found = set(as_list(resource.get("DependsOn", [])))

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if "Ref" in value and value["Ref"] in template["Resources"]:
                found.add(value["Ref"])
            if "Fn::GetAtt" in value:
                found.add(value["Fn::GetAtt"][0])
            for inner in value.values():
                walk(inner)
        elif isinstance(value, list):
            for inner in value:
                walk(inner)

    walk(resource.get("Properties", {}))
    return found


def test_the_service_waits_for_the_stop_step_and_the_resume_step_for_the_service(vpc_template: Template) -> None:
    gates = _gates(vpc_template)
    assert sorted(gates) == ["resume", "stop"]
    (stop_id, stop), (resume_id, _) = gates["stop"], gates["resume"]
    service_id, service = only(vpc_template, "AWS::ECS::Service")
    assert stop_id in as_list(service["DependsOn"])
    assert service_id in _depends_on(vpc_template, resume_id)
    assert stop_id in _depends_on(vpc_template, resume_id)  # it reads the count from before
    assert service_id not in _depends_on(vpc_template, stop_id)  # no cycle: it finds the service by logical id
    assert stop["Properties"]["ServiceLogicalId"] == service_id
    # CloudFormation sends DesiredCount with every update of the service: it starts the new tasks.
    assert service["Properties"]["DesiredCount"] >= 1


def test_both_steps_carry_the_pinned_version_and_name_what_they_act_on(vpc_template: Template) -> None:
    gates = _gates(vpc_template)
    for step in ("stop", "resume"):
        properties = gates[step][1]["Properties"]
        assert properties["MlflowVersion"] == pinned_mlflow_version()
        assert render(properties["EcsCluster"]) == CLUSTER
        assert int(properties["ServiceTimeout"]) <= 3600
    assert render(gates["stop"][1]["Properties"]["DatabaseCluster"]) == "${DatabaseCluster5B53A178}"
    assert render(gates["resume"][1]["Properties"]["ServiceArn"]) == "${TrackingService44D9AA4E}"


def test_the_function_may_answer_before_cloudformation_stops_waiting(vpc_template: Template) -> None:
    (stop_id, stop) = _gates(vpc_template)["stop"]
    function_id = stop["Properties"]["ServiceToken"]["Fn::GetAtt"][0]
    function = vpc_template["Resources"][function_id]["Properties"]
    assert function["Timeout"] == 900 < int(stop["Properties"]["ServiceTimeout"])
    assert function["Handler"] == "index.handler" and function["Runtime"].startswith("python3.")


def _role_statements(template: Template) -> dict[str, dict[str, Any]]:
    (_, stop) = _gates(template)["stop"]
    function_id = stop["Properties"]["ServiceToken"]["Fn::GetAtt"][0]
    role_id = template["Resources"][function_id]["Properties"]["Role"]["Fn::GetAtt"][0]
    role = template["Resources"][role_id]["Properties"]
    assert "ManagedPolicyArns" not in role
    (policy,) = role["Policies"]
    # No other policy is attached to the role.
    for resource in resources(template, "AWS::IAM::Policy").values():
        assert {"Ref": role_id} not in resource["Properties"].get("Roles", [])
    return {statement["Sid"]: statement for statement in policy["PolicyDocument"]["Statement"]}


@pytest.mark.parametrize(
    ("sid", "actions", "resources_"),
    [
        (
            "ReadOwnStack",
            ["cloudformation:DescribeStackResource", "cloudformation:DescribeStacks"],
            ["${AWS::StackId}"],
        ),
        (
            "SnapshotTheCluster",
            ["rds:CreateDBClusterSnapshot", "rds:DescribeDBClusterSnapshots"],
            [
                "arn:${AWS::Partition}:rds:${AWS::Region}:${AWS::AccountId}:cluster-snapshot:mlflow-upgrade-*",
                "arn:${AWS::Partition}:rds:${AWS::Region}:${AWS::AccountId}:cluster:${DatabaseCluster5B53A178}",
            ],
        ),
        (
            "TagItsSnapshots",
            ["rds:AddTagsToResource"],
            ["arn:${AWS::Partition}:rds:${AWS::Region}:${AWS::AccountId}:cluster-snapshot:mlflow-upgrade-*"],
        ),
        (
            "ScaleTheService",
            ["ecs:DescribeServices", "ecs:UpdateService"],
            [f"arn:${{AWS::Partition}}:ecs:${{AWS::Region}}:${{AWS::AccountId}}:service/{CLUSTER}/*"],
        ),
        (
            "ReadTheTasks",
            ["ecs:DescribeTasks"],
            [f"arn:${{AWS::Partition}}:ecs:${{AWS::Region}}:${{AWS::AccountId}}:task/{CLUSTER}/*"],
        ),
        ("WriteOwnLogs", ["logs:CreateLogStream", "logs:PutLogEvents"], ["${UpgradeGateLogs16BE7DE1.Arn}"]),
    ],
)
def test_the_role_may_do_only_this(vpc_template: Template, sid: str, actions: list[str], resources_: list[str]) -> None:
    statement = _role_statements(vpc_template)[sid]
    assert statement["Effect"] == "Allow" and "Condition" not in statement
    assert sorted(as_list(statement["Action"])) == actions
    assert sorted(render(resource) for resource in as_list(statement["Resource"])) == sorted(resources_)


def test_listing_tasks_is_kept_to_the_stacks_ecs_cluster(vpc_template: Template) -> None:
    statements = _role_statements(vpc_template)
    assert sorted(statements) == [
        "ListTheTasks", "ReadOwnStack", "ReadTheTasks", "ScaleTheService", "SnapshotTheCluster", "TagItsSnapshots",
        "WriteOwnLogs",
    ]  # fmt: skip
    listing = statements["ListTheTasks"]
    assert (listing["Action"], listing["Resource"]) == ("ecs:ListTasks", "*")
    assert listing["Condition"] == {"ArnEquals": {"ecs:cluster": {"Fn::GetAtt": ["TrackingClusterFD7EA43B", "Arn"]}}}
