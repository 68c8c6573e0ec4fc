"""Scaling to zero outside working hours: scheduled capacity, the 503 page on the listener, the muted alarm."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from moto import mock_aws

from stacks import names
from stacks.alarm_thresholds import rule
from stacks.components.scale_to_zero import MAX_PAGE_CHARS, back_at, scaled_down_error, scaled_down_page
from tests.fake_aws import use_fake_aws
from tests.stacks.helpers import Template, as_list, only, ref_id, resources
from tests.synth import IAM_SCALE_TO_ZERO_VARIANT, SCALE_TO_ZERO_VARIANT, synth_templates

NIGHTS = SCALE_TO_ZERO_VARIANT["schedule_scale_to_zero"]
ALARM = rule("tasks-below-desired").alarm_name
REGION = "us-east-1"
LISTENER, TARGET_GROUP = "AWS::ElasticLoadBalancingV2::Listener", "AWS::ElasticLoadBalancingV2::TargetGroup"


@pytest.fixture(scope="module")
def night_template() -> Template:
    return synth_templates(**SCALE_TO_ZERO_VARIANT)[names.VPC_STACK]


@pytest.fixture(scope="module")
def iam_night_template() -> Template:
    return synth_templates(**IAM_SCALE_TO_ZERO_VARIANT)[names.VPC_STACK]


SCHEDULES = ("ShowPage", "Forward", "MuteAlarm", "UnmuteAlarm", "WatchAgain", "IamShowError", "IamForward")


def schedules(template: Template) -> dict[str, dict[str, Any]]:
    """Scale-to-zero schedule (its construct id, one of SCHEDULES) -> properties."""
    found = {}
    for logical_id, resource in resources(template, "AWS::Scheduler::Schedule").items():
        for name in SCHEDULES:
            if logical_id.startswith(f"ScaleToZero{name}"):
                found[name] = resource["Properties"]
    assert len(found) == sum(i.startswith("ScaleToZero") for i in resources(template, "AWS::Scheduler::Schedule"))
    return found


def by_port(template: Template, resource_type: str) -> dict[int, str]:
    """Listener or target group port -> its logical id (the password path's and, with IAM sign-in, the IAM one's)."""
    return {
        resource["Properties"]["Port"]: logical_id
        for logical_id, resource in resources(template, resource_type).items()
    }


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
        "WatchAgain": (NIGHTS["up"], "Etc/UTC"),
    }
    arns = {name: resolve(props["Target"]["Arn"], {"AWS::Partition": "aws"}) for name, props in found.items()}
    assert arns == {
        "ShowPage": "arn:aws:scheduler:::aws-sdk:elasticloadbalancingv2:modifyListener",
        "Forward": "arn:aws:scheduler:::aws-sdk:elasticloadbalancingv2:modifyListener",
        "MuteAlarm": "arn:aws:scheduler:::aws-sdk:cloudwatch:disableAlarmActions",
        "UnmuteAlarm": "arn:aws:scheduler:::aws-sdk:cloudwatch:enableAlarmActions",
        "WatchAgain": "arn:aws:scheduler:::aws-sdk:cloudwatch:setAlarmState",
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
    assert (inputs["WatchAgain"]["AlarmName"], inputs["WatchAgain"]["StateValue"]) == (ALARM, "OK")


@pytest.mark.parametrize(("which", "listener_ports"), [("night_template", [80]), ("iam_night_template", [80, 8081])])
def test_the_schedules_role_may_modify_those_listeners_and_switch_that_alarm_only(
    which: str, listener_ports: list[int], request: pytest.FixtureRequest
) -> None:
    template: Template = request.getfixturevalue(which)
    found = schedules(template)
    (role_id,) = {ref_id(props["Target"]["RoleArn"]) for props in found.values()}
    role = resources(template, "AWS::IAM::Role")[role_id]["Properties"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    assert "ManagedPolicyArns" not in role and "Policies" not in role
    statements = [
        statement
        for policy in resources(template, "AWS::IAM::Policy").values()
        if role_id in [ref_id(r) for r in policy["Properties"]["Roles"]]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    listeners = {logical_id: f"LISTENER-{port}" for port, logical_id in by_port(template, LISTENER).items()}
    refs = {**listeners, "AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": "123456789012"}
    granted = {
        (action, resolve(resource, refs))
        for statement in statements
        for action in as_list(statement["Action"])
        for resource in as_list(statement["Resource"])
    }
    alarm_arn = f"arn:aws:cloudwatch:{REGION}:123456789012:alarm:{ALARM}"
    assert granted == {
        *{("elasticloadbalancing:ModifyListener", f"LISTENER-{port}") for port in listener_ports},
        ("cloudwatch:DisableAlarmActions", alarm_arn),
        ("cloudwatch:EnableAlarmActions", alarm_arn),
        ("cloudwatch:SetAlarmState", alarm_arn),
    }
    assert all(statement["Effect"] == "Allow" and "Condition" not in statement for statement in statements)


def test_with_iam_sign_in_the_iam_listener_is_switched_at_down_and_up_too(iam_night_template: Template) -> None:
    found = schedules(iam_night_template)
    assert set(found) == set(SCHEDULES)
    assert {name: found[name]["ScheduleExpression"] for name in ("IamShowError", "IamForward")} == {
        "IamShowError": NIGHTS["down"],
        "IamForward": NIGHTS["up"],
    }
    assert all(found[name]["ScheduleExpressionTimezone"] == "Etc/UTC" for name in found)
    listeners, groups = by_port(iam_night_template, LISTENER), by_port(iam_night_template, TARGET_GROUP)
    refs = {listeners[80]: "L", listeners[8081]: "IAM-L", groups[8080]: "G", groups[8081]: "IAM-G"}
    inputs = {name: json.loads(resolve(props["Target"]["Input"], refs)) for name, props in found.items()}
    forward = [{"Type": "forward", "TargetGroupArn": "IAM-G"}]
    assert inputs["IamForward"] == {"ListenerArn": "IAM-L", "DefaultActions": forward}
    (error,) = inputs["IamShowError"]["DefaultActions"]
    assert inputs["IamShowError"]["ListenerArn"] == "IAM-L"
    assert error["FixedResponseConfig"] == {
        "StatusCode": "503",
        "ContentType": "application/json",
        "MessageBody": scaled_down_error(NIGHTS["up"]),
    }
    # The password listener's schedules are the shared mode's.
    assert inputs["Forward"] == {"ListenerArn": "L", "DefaultActions": [{"Type": "forward", "TargetGroupArn": "G"}]}
    assert inputs["ShowPage"]["DefaultActions"][0]["FixedResponseConfig"]["MessageBody"] == scaled_down_page(
        NIGHTS["up"]
    )


def test_the_iam_error_is_an_mlflow_rest_error_saying_when_mlflow_is_back() -> None:
    """Its error code is one MLflow knows, so a client that parses the body gets a typed error."""
    from mlflow.exceptions import RestException
    from mlflow.protos.databricks_pb2 import TEMPORARILY_UNAVAILABLE, ErrorCode

    body = scaled_down_error(NIGHTS["up"])
    assert len(body) <= MAX_PAGE_CHARS
    error = RestException(json.loads(body))
    assert error.error_code == ErrorCode.Name(TEMPORARILY_UNAVAILABLE)
    assert "back at 07:00 UTC, Monday to Friday; retry after that time." in error.message
    assert error.get_http_status_code() == 503


def test_mlflow_client_retries_a_503_and_reports_it_without_the_body(monkeypatch: pytest.MonkeyPatch) -> None:
    """What docs/operations.md says a signed MLflow client sees at night (retries cut to one to keep it short)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    body = scaled_down_error(NIGHTS["up"]).encode()
    requests_seen = []

    class ScaledDown(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            requests_seen.append(self.path)
            self.send_response(503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), ScaledDown)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    try:
        with pytest.raises(MlflowException) as raised:
            MlflowClient(f"http://127.0.0.1:{server.server_port}").search_experiments()
    finally:
        server.shutdown()
        server.server_close()
    assert len(requests_seen) == 2  # the request and its one retry
    assert "too many 503 error responses" in raised.value.message
    assert "back at" not in raised.value.message


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


@pytest.mark.parametrize("which", ["night_template", "iam_night_template"])
def test_each_input_is_a_call_that_gives_each_listener_its_503_then_its_tasks_back(
    which: str, request: pytest.FixtureRequest, aws: None
) -> None:
    """The schedules' Input JSON, sent as Scheduler sends it, to moto's ELB and CloudWatch.

    One moto listener and target group per listener and target group of the template, on the same ports.
    """
    template: Template = request.getfixturevalue(which)
    ec2, elbv2, cloudwatch = (boto3.client(service, region_name=REGION) for service in ("ec2", "elbv2", "cloudwatch"))
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"{REGION}{zone}")["Subnet"][
            "SubnetId"
        ]
        for i, zone in enumerate("ab")
    ]
    balancer = elbv2.create_load_balancer(Name="mlflow", Subnets=subnets, Scheme="internal")["LoadBalancers"][0]
    # The template's listener ports (80, and 8081 for IAM sign-in) to its target groups' (8080, 8081).
    routes = {80: 8080, 8081: 8081} if which == "iam_night_template" else {80: 8080}
    listener_ids, group_ids = by_port(template, LISTENER), by_port(template, TARGET_GROUP)
    assert (set(listener_ids), set(group_ids)) == (set(routes), set(routes.values()))
    arns: dict[str, str] = {}
    for listener_port, group_port in routes.items():
        group = elbv2.create_target_group(
            Name=f"nginx-{group_port}", Protocol="HTTP", Port=group_port, VpcId=vpc, TargetType="ip"
        )
        arns[group_ids[group_port]] = group["TargetGroups"][0]["TargetGroupArn"]
        arns[listener_ids[listener_port]] = elbv2.create_listener(
            LoadBalancerArn=balancer["LoadBalancerArn"],
            Protocol="HTTP",
            Port=listener_port,
            DefaultActions=[{"Type": "forward", "TargetGroupArn": arns[group_ids[group_port]]}],
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

    found = schedules(template)
    calls = {name: json.loads(resolve(props["Target"]["Input"], arns)) for name, props in found.items()}
    methods = {"modifyListener": elbv2.modify_listener}
    methods |= {"disableAlarmActions": cloudwatch.disable_alarm_actions}
    methods |= {"enableAlarmActions": cloudwatch.enable_alarm_actions}
    methods |= {"setAlarmState": cloudwatch.set_alarm_state}

    def run_at(expression: str) -> None:
        for name, props in found.items():
            if props["ScheduleExpression"] == expression:
                methods[resolve(props["Target"]["Arn"], {"AWS::Partition": "aws"}).rpartition(":")[2]](**calls[name])

    def default_action(listener_port: int) -> dict[str, Any]:
        listener_arn = arns[listener_ids[listener_port]]
        (action,) = elbv2.describe_listeners(ListenerArns=[listener_arn])["Listeners"][0]["DefaultActions"]
        return action

    def actions_enabled() -> bool:
        return cloudwatch.describe_alarms(AlarmNames=[ALARM])["MetricAlarms"][0]["ActionsEnabled"]

    def state() -> str:
        return cloudwatch.describe_alarms(AlarmNames=[ALARM])["MetricAlarms"][0]["StateValue"]

    answers = {
        80: ("text/html", scaled_down_page(NIGHTS["up"])),
        8081: ("application/json", scaled_down_error(NIGHTS["up"])),
    }
    run_at(NIGHTS["down"])
    for listener_port in routes:
        page = default_action(listener_port)
        assert page["Type"] == "fixed-response"
        response = page["FixedResponseConfig"]
        content_type, body = answers[listener_port]
        assert (response["StatusCode"], response["ContentType"], response["MessageBody"]) == ("503", content_type, body)
        assert "back at 07:00 UTC, Monday to Friday" in response["MessageBody"]
    assert actions_enabled() is False
    # No task all night: the alarm breaches (silently).
    cloudwatch.set_alarm_state(AlarmName=ALARM, StateValue="ALARM", StateReason="no healthy task")

    run_at(NIGHTS["up"])
    for listener_port, group_port in routes.items():
        forward = default_action(listener_port)
        assert (forward["Type"], forward["TargetGroupArn"]) == ("forward", arns[group_ids[group_port]])
    assert actions_enabled() is True
    assert state() == "OK", "watching again: tasks that never start turn it to ALARM, which notifies"


def test_an_expression_is_shown_as_text_never_as_markup() -> None:
    page = scaled_down_page("cron(0 7 ? * <script> *)")
    assert "<script>" not in page and "&lt;script&gt;" in page
