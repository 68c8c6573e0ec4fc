"""Scaling to zero outside working hours: scheduled capacity, the 503 page on the listener, the muted alarm."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from stacks import names
from stacks.alarm_thresholds import rule
from stacks.components.scale_to_zero import MAX_PAGE_CHARS, back_at, scaled_down_page
from tests.fake_aws import use_fake_aws
from tests.stacks.helpers import Template, only, ref_id, resources
from tests.synth import SCALE_TO_ZERO_VARIANT, synth_templates

NIGHTS = SCALE_TO_ZERO_VARIANT["schedule_scale_to_zero"]
ALARM = rule("tasks-below-desired").alarm_name
REGION = "us-east-1"


@pytest.fixture(scope="module")
def night_template() -> Template:
    return synth_templates(**SCALE_TO_ZERO_VARIANT)[names.VPC_STACK]


def schedules(template: Template) -> dict[str, dict[str, Any]]:
    """Scale-to-zero schedule (its construct id: ShowPage, Forward, MuteAlarm, UnmuteAlarm) -> properties."""
    found = {}
    for logical_id, resource in resources(template, "AWS::Scheduler::Schedule").items():
        for name in ("ShowPage", "Forward", "MuteAlarm", "UnmuteAlarm"):
            if logical_id.startswith(f"ScaleToZero{name}"):
                found[name] = resource["Properties"]
    return found


def resolve(value: Any, refs: dict[str, str]) -> Any:
    """A template value with each Ref replaced from ``refs`` and each Fn::Join joined."""
    if isinstance(value, dict) and set(value) == {"Ref"}:
        return refs[value["Ref"]]
    if isinstance(value, dict) and set(value) == {"Fn::Join"}:
        separator, parts = value["Fn::Join"]
        return separator.join(resolve(part, refs) for part in parts)
    return value


def test_off_by_default_nothing_is_scheduled(vpc_template: Template) -> None:
    _, target = only(vpc_template, "AWS::ApplicationAutoScaling::ScalableTarget")
    assert "ScheduledActions" not in target["Properties"]
    assert schedules(vpc_template) == {}


def test_the_service_goes_to_zero_at_down_and_back_to_its_floor_and_ceiling_at_up(night_template: Template) -> None:
    _, target = only(night_template, "AWS::ApplicationAutoScaling::ScalableTarget")
    properties = target["Properties"]
    actions = {action["Schedule"]: action["ScalableTargetAction"] for action in properties["ScheduledActions"]}
    assert actions == {
        NIGHTS["down"]: {"MinCapacity": 0, "MaxCapacity": 0},
        NIGHTS["up"]: {"MinCapacity": properties["MinCapacity"], "MaxCapacity": properties["MaxCapacity"]},
    }
    assert (properties["MinCapacity"], properties["MaxCapacity"]) == (2, 4)


def test_the_schedules_run_at_down_and_up_in_utc_on_the_listener_and_the_alarm(night_template: Template) -> None:
    found = schedules(night_template)
    expressions = {
        name: (props["ScheduleExpression"], props["ScheduleExpressionTimezone"]) for name, props in found.items()
    }
    assert expressions == {
        "ShowPage": (NIGHTS["down"], "Etc/UTC"),
        "MuteAlarm": (NIGHTS["down"], "Etc/UTC"),
        "Forward": (NIGHTS["up"], "Etc/UTC"),
        "UnmuteAlarm": (NIGHTS["up"], "Etc/UTC"),
    }
    arns = {name: resolve(props["Target"]["Arn"], {"AWS::Partition": "aws"}) for name, props in found.items()}
    assert arns == {
        "ShowPage": "arn:aws:scheduler:::aws-sdk:elasticloadbalancingv2:modifyListener",
        "Forward": "arn:aws:scheduler:::aws-sdk:elasticloadbalancingv2:modifyListener",
        "MuteAlarm": "arn:aws:scheduler:::aws-sdk:cloudwatch:disableAlarmActions",
        "UnmuteAlarm": "arn:aws:scheduler:::aws-sdk:cloudwatch:enableAlarmActions",
    }
    (listener_id,) = resources(night_template, "AWS::ElasticLoadBalancingV2::Listener")
    (group_id,) = resources(night_template, "AWS::ElasticLoadBalancingV2::TargetGroup")
    inputs = {
        name: json.loads(resolve(props["Target"]["Input"], {listener_id: "L", group_id: "G"}))
        for name, props in found.items()
    }
    assert inputs["Forward"] == {"ListenerArn": "L", "DefaultActions": [{"Type": "forward", "TargetGroupArn": "G"}]}
    (page,) = inputs["ShowPage"]["DefaultActions"]
    assert page["FixedResponseConfig"]["StatusCode"] == "503"
    assert inputs["MuteAlarm"] == inputs["UnmuteAlarm"] == {"AlarmNames": [ALARM]}


def test_the_schedules_role_may_modify_that_listener_and_switch_that_alarm_only(night_template: Template) -> None:
    found = schedules(night_template)
    (role_id,) = {ref_id(props["Target"]["RoleArn"]) for props in found.values()}
    role = resources(night_template, "AWS::IAM::Role")[role_id]["Properties"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    assert "ManagedPolicyArns" not in role and "Policies" not in role
    statements = [
        statement
        for policy in resources(night_template, "AWS::IAM::Policy").values()
        if role_id in [ref_id(r) for r in policy["Properties"]["Roles"]]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    (listener_id,) = resources(night_template, "AWS::ElasticLoadBalancingV2::Listener")
    granted = {
        (
            action,
            resolve(
                statement["Resource"],
                {
                    listener_id: "LISTENER",
                    "AWS::Partition": "aws",
                    "AWS::Region": REGION,
                    "AWS::AccountId": "123456789012",
                },
            ),
        )
        for statement in statements
        for action in ([statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"])
    }
    alarm_arn = f"arn:aws:cloudwatch:{REGION}:123456789012:alarm:{ALARM}"
    assert granted == {
        ("elasticloadbalancing:ModifyListener", "LISTENER"),
        ("cloudwatch:DisableAlarmActions", alarm_arn),
        ("cloudwatch:EnableAlarmActions", alarm_arn),
    }
    assert all(statement["Effect"] == "Allow" and "Condition" not in statement for statement in statements)


@pytest.mark.parametrize(
    ("up", "words"),
    [
        ("cron(0 7 ? * MON-FRI *)", "at 07:00 UTC, Monday to Friday"),
        ("cron(30 6 * * ? *)", "at 06:30 UTC every day"),
        ("cron(0 8 ? * MON *)", "at 08:00 UTC, Monday"),
        ("cron(0 8 ? * 2-6 *)", "at 08:00 UTC (days of the week 2-6)"),
        ("cron(0 7,9 ? * MON-FRI *)", "on the schedule cron(0 7,9 ? * MON-FRI *) (UTC)"),
        ("cron(0 7 1 * ? *)", "on the schedule cron(0 7 1 * ? *) (UTC)"),
    ],
)
def test_the_page_says_when_mlflow_is_back_in_words_where_the_expression_is_plain(up: str, words: str) -> None:
    assert back_at(up) == words
    page = scaled_down_page(up)
    assert f"back {words}." in page and len(page) <= MAX_PAGE_CHARS


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    use_fake_aws(monkeypatch, REGION)
    with mock_aws():
        yield


def test_each_input_is_a_call_that_gives_the_listener_the_page_then_the_tasks_back(
    night_template: Template, aws: None
) -> None:
    """The schedules' Input JSON, sent as Scheduler sends it, to moto's ELB and CloudWatch."""
    ec2, elbv2, cloudwatch = (boto3.client(service, region_name=REGION) for service in ("ec2", "elbv2", "cloudwatch"))
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"{REGION}{zone}")["Subnet"][
            "SubnetId"
        ]
        for i, zone in enumerate("ab")
    ]
    balancer = elbv2.create_load_balancer(Name="mlflow", Subnets=subnets, Scheme="internal")["LoadBalancers"][0]
    group = elbv2.create_target_group(Name="nginx", Protocol="HTTP", Port=8080, VpcId=vpc, TargetType="ip")
    group_arn = group["TargetGroups"][0]["TargetGroupArn"]
    listener_arn = elbv2.create_listener(
        LoadBalancerArn=balancer["LoadBalancerArn"],
        Protocol="HTTP",
        Port=80,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": group_arn}],
    )["Listeners"][0]["ListenerArn"]
    cloudwatch.put_metric_alarm(
        AlarmName=ALARM,
        MetricName="HealthyHostCount",
        Namespace="AWS/ApplicationELB",
        Statistic="Minimum",
        Period=60,
        EvaluationPeriods=10,
        Threshold=1,
        ComparisonOperator="GreaterThanOrEqualToThreshold",
        AlarmActions=[f"arn:aws:sns:{REGION}:123456789012:alarms"],
    )

    (listener_id,) = resources(night_template, "AWS::ElasticLoadBalancingV2::Listener")
    (group_id,) = resources(night_template, "AWS::ElasticLoadBalancingV2::TargetGroup")
    found = schedules(night_template)
    call = {
        name: json.loads(resolve(props["Target"]["Input"], {listener_id: listener_arn, group_id: group_arn}))
        for name, props in found.items()
    }

    def default_actions() -> list[dict[str, Any]]:
        return elbv2.describe_listeners(ListenerArns=[listener_arn])["Listeners"][0]["DefaultActions"]

    def actions_enabled() -> bool:
        return cloudwatch.describe_alarms(AlarmNames=[ALARM])["MetricAlarms"][0]["ActionsEnabled"]

    # At down.
    elbv2.modify_listener(**call["ShowPage"])
    cloudwatch.disable_alarm_actions(**call["MuteAlarm"])
    (page,) = default_actions()
    assert page["Type"] == "fixed-response"
    response = page["FixedResponseConfig"]
    assert (response["StatusCode"], response["ContentType"]) == ("503", "text/html")
    assert response["MessageBody"] == scaled_down_page(NIGHTS["up"])
    assert "back at 07:00 UTC, Monday to Friday" in response["MessageBody"]
    assert actions_enabled() is False

    # At up.
    elbv2.modify_listener(**call["Forward"])
    cloudwatch.enable_alarm_actions(**call["UnmuteAlarm"])
    (forward,) = default_actions()
    assert (forward["Type"], forward["TargetGroupArn"]) == ("forward", group_arn)
    assert actions_enabled() is True


def test_an_expression_is_shown_as_text_never_as_markup() -> None:
    page = scaled_down_page("cron(0 7 ? * <script> *)")
    assert "<script>" not in page and "&lt;script&gt;" in page
