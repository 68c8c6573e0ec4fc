"""The scheduled gc task: MLflow's gc from the mlflow image, with the service's roles and network."""

from typing import Any

from stacks import names
from tests.stacks.helpers import Template, as_list, ref_id, resources, service_task_definition
from tests.synth import synth_templates


def gc_parts(template: Template) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The schedule, the task definition it runs, and the service's task definition."""
    ((_, schedule),) = resources(template, "AWS::Scheduler::Schedule").items()
    definitions = resources(template, "AWS::ECS::TaskDefinition")
    gc = definitions[ref_id(schedule["Properties"]["Target"]["EcsParameters"]["TaskDefinitionArn"])]
    return schedule["Properties"], gc["Properties"], service_task_definition(template)


def test_the_schedule_runs_gc_apply_daily_from_the_mlflow_image(vpc_template: Template) -> None:
    schedule, gc, service = gc_parts(vpc_template)
    assert schedule["ScheduleExpression"] == "cron(0 3 * * ? *)"
    assert schedule["State"] == "ENABLED"
    (container,) = gc["ContainerDefinitions"]
    assert container["Command"] == ["gc", "--apply"]
    mlflow = next(c for c in service["ContainerDefinitions"] if c["Name"] == "mlflow")
    assert container["Image"] == mlflow["Image"]
    assert gc["RuntimePlatform"] == service["RuntimePlatform"]
    environment = {item["Name"]: item["Value"] for item in container["Environment"]}
    assert environment["GC_OLDER_THAN_DAYS"] == "30"
    served = {item["Name"]: item["Value"] for item in mlflow["Environment"]}
    for key in ("DB_HOST", "DB_PORT", "DB_NAME", "MLFLOW_ARTIFACTS_DESTINATION"):
        assert environment[key] == served[key], key
    # The database password comes as an ECS secret, as the server's does; nothing else secret.
    assert {item["Name"] for item in container["Secrets"]} == {"DB_USERNAME", "DB_PASSWORD"}
    assert not any("PASSWORD" in name or "SECRET" in name for name in environment)
    assert container["ReadonlyRootFilesystem"] is True


def test_it_runs_with_the_services_roles_network_and_cluster(vpc_template: Template) -> None:
    schedule, gc, service = gc_parts(vpc_template)
    assert gc["TaskRoleArn"] == service["TaskRoleArn"]
    assert gc["ExecutionRoleArn"] == service["ExecutionRoleArn"]
    target = schedule["Target"]
    (service_props,) = (s["Properties"] for s in resources(vpc_template, "AWS::ECS::Service").values())
    assert ref_id(target["Arn"]) == ref_id(service_props["Cluster"])
    network = target["EcsParameters"]["NetworkConfiguration"]["AwsvpcConfiguration"]
    served = service_props["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert network["AssignPublicIp"] == "DISABLED"
    assert network["Subnets"] == served["Subnets"]
    assert network["SecurityGroups"] == served["SecurityGroups"]


def test_the_scheduler_may_start_the_gc_task_and_nothing_else(vpc_template: Template) -> None:
    schedule, _, service = gc_parts(vpc_template)
    role = ref_id(schedule["Target"]["RoleArn"])
    roles = resources(vpc_template, "AWS::IAM::Role")
    assert "ManagedPolicyArns" not in roles[role]["Properties"]
    statements = [
        statement
        for policy in resources(vpc_template, "AWS::IAM::Policy").values()
        if role in [ref_id(r) for r in policy["Properties"]["Roles"]]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    granted = {
        (action, ref_id(resource))
        for s in statements
        for action in as_list(s["Action"])
        for resource in as_list(s["Resource"])
    }
    (gc_definition,) = {ref_id(schedule["Target"]["EcsParameters"]["TaskDefinitionArn"])}
    assert granted == {
        ("ecs:RunTask", gc_definition),
        ("iam:PassRole", ref_id(service["TaskRoleArn"])),
        ("iam:PassRole", ref_id(service["ExecutionRoleArn"])),
    }
    assert all(s["Effect"] == "Allow" for s in statements)
    pass_role = next(s for s in statements if s["Action"] == "iam:PassRole")
    assert pass_role["Condition"] == {"StringLike": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}


def test_settings_change_the_schedule_age_and_orphans_and_empty_turns_it_off() -> None:
    template = synth_templates(gc_schedule="rate(12 hours)", gc_older_than_days=7, gc_delete_orphans=True)[
        names.VPC_STACK
    ]
    schedule, gc, _ = gc_parts(template)
    assert schedule["ScheduleExpression"] == "rate(12 hours)"
    (container,) = gc["ContainerDefinitions"]
    assert container["Command"] == ["gc", "--apply", "--delete-orphans"]
    assert {"Name": "GC_OLDER_THAN_DAYS", "Value": "7"} in container["Environment"]
    off = synth_templates(gc_schedule="")[names.VPC_STACK]
    assert resources(off, "AWS::Scheduler::Schedule") == {}
    assert len(resources(off, "AWS::ECS::TaskDefinition")) == 1
