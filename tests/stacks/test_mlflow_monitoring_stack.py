"""MLflowMonitoringStack: every alarm's metric, threshold and action; the topic; ECS events; the dashboard."""

import json
from typing import Any

import pytest

from stacks import names
from stacks.alarm_thresholds import ALARMS, IAM_SIGN_IN_ALARMS, aurora_postgres_max_connections
from tests.stacks.helpers import Template, follow_output, only, props, resources
from tests.synth import DAY_TWO_VARIANT, synth_templates

# What each alarm must watch, written out independently of stacks/alarm_thresholds.py:
# (threshold, comparison, period s, evaluation periods, datapoints, missing data,
#  {(namespace, metric, statistic): dimension names}, expression or None)
API = ("ApiId", "Stage")
ALB = ("LoadBalancer", "TargetGroup")
SERVICE = ("ClusterName", "ServiceName")
CLUSTER = ("DBClusterIdentifier",)
BUCKET = ("BucketName", "FilterId")
EXPECTED: dict[str, tuple[Any, ...]] = {
    "mlflow-api-5xx-rate": (
        5, "GreaterThanThreshold", 300, 2, 2, "notBreaching",
        {("AWS/ApiGateway", "5xx", "Sum"): API, ("AWS/ApiGateway", "Count", "Sum"): API},
        "IF(api5xx_requests >= 20, 100 * FILL(api5xx_errors, 0) / api5xx_requests, 0)",
    ),
    "mlflow-api-latency-p95": (
        3000, "GreaterThanThreshold", 300, 3, 3, "notBreaching", {("AWS/ApiGateway", "Latency", "p95"): API}, None,
    ),
    "mlflow-alb-unhealthy-targets": (
        1, "GreaterThanOrEqualToThreshold", 60, 5, 5, "notBreaching",
        {("AWS/ApplicationELB", "UnHealthyHostCount", "Maximum"): ALB}, None,
    ),
    "mlflow-tasks-below-desired": (
        1, "GreaterThanOrEqualToThreshold", 60, 10, 10, "breaching",
        # The default floor (min_task_count=2) against the ALB's free metric: no Container Insights needed.
        {("AWS/ApplicationELB", "HealthyHostCount", "Minimum"): ALB},
        "2 - FILL(healthy, 0)",
    ),
    "mlflow-task-restarts": (
        3, "GreaterThanOrEqualToThreshold", 900, 1, 1, "notBreaching",
        {("AWS/Events", "TriggeredRules", "Sum"): ("RuleName",)}, None,
    ),
    "mlflow-aurora-capacity-at-max": (
        3.6, "GreaterThanOrEqualToThreshold", 300, 3, 3, "notBreaching",
        {("AWS/RDS", "ServerlessDatabaseCapacity", "Average"): CLUSTER}, None,
    ),
    "mlflow-aurora-cpu": (
        80, "GreaterThanThreshold", 300, 3, 3, "notBreaching",
        {("AWS/RDS", "CPUUtilization", "Average"): CLUSTER}, None,
    ),
    "mlflow-aurora-connections": (
        658.4, "GreaterThanOrEqualToThreshold", 300, 2, 2, "notBreaching",
        {("AWS/RDS", "DatabaseConnections", "Maximum"): CLUSTER}, None,
    ),
    "mlflow-artifacts-5xx-rate": (
        1, "GreaterThanThreshold", 300, 2, 2, "notBreaching",
        {("AWS/S3", "5xxErrors", "Sum"): BUCKET, ("AWS/S3", "AllRequests", "Sum"): BUCKET},
        "IF(s35xx_requests >= 20, 100 * FILL(s35xx_errors, 0) / s35xx_requests, 0)",
    ),
    "mlflow-artifacts-4xx-rate": (
        10, "GreaterThanThreshold", 300, 3, 3, "notBreaching",
        {("AWS/S3", "4xxErrors", "Sum"): BUCKET, ("AWS/S3", "AllRequests", "Sum"): BUCKET},
        "IF(s34xx_requests >= 20, 100 * FILL(s34xx_errors, 0) / s34xx_requests, 0)",
    ),
}  # fmt: skip
# IAM sign-in's alarms and the password path's alarm whose threshold and metric each repeats.
IAM_TWINS = {
    "mlflow-iam-api-5xx-rate": "mlflow-api-5xx-rate",
    "mlflow-iam-api-latency-p95": "mlflow-api-latency-p95",
    "mlflow-iam-alb-unhealthy-targets": "mlflow-alb-unhealthy-targets",
}


def _alarms(template: Template) -> dict[str, dict[str, Any]]:
    return {
        a["Properties"]["AlarmName"]: a["Properties"] for a in resources(template, "AWS::CloudWatch::Alarm").values()
    }


def _metric_stats(alarm: dict[str, Any]) -> list[dict[str, Any]]:
    """Every metric an alarm reads, plain or inside metric math, as {namespace, name, stat, period, dims}."""
    if "MetricName" in alarm:
        return [
            {
                "namespace": alarm["Namespace"],
                "name": alarm["MetricName"],
                "stat": alarm.get("Statistic") or alarm.get("ExtendedStatistic"),
                "period": alarm["Period"],
                "dims": {d["Name"]: d["Value"] for d in alarm["Dimensions"]},
            }
        ]
    return [
        {
            "namespace": query["MetricStat"]["Metric"]["Namespace"],
            "name": query["MetricStat"]["Metric"]["MetricName"],
            "stat": query["MetricStat"]["Stat"],
            "period": query["MetricStat"]["Period"],
            "dims": {d["Name"]: d["Value"] for d in query["MetricStat"]["Metric"]["Dimensions"]},
        }
        for query in alarm["Metrics"]
        if "MetricStat" in query
    ]


def _expression(alarm: dict[str, Any]) -> str | None:
    expressions = [query for query in alarm.get("Metrics", []) if "Expression" in query]
    assert len(expressions) <= 1
    if expressions:
        assert expressions[0]["ReturnData"] is True
        assert all(not q.get("ReturnData", False) for q in alarm["Metrics"] if "MetricStat" in q)
        return expressions[0]["Expression"]
    return None


def _dimension_sources(templates: dict[str, Template], *, iam: bool = False) -> dict[str, Any]:
    """Dimension name -> the resource attribute it must resolve to, found in the producing stacks.

    ``iam``: the API and target group are IAM sign-in's (API ``mlflow-iam``, nginx's IAM port).
    """
    vpc, gateway, monitoring = (templates[n] for n in (names.VPC_STACK, names.GATEWAY_STACK, names.MONITORING_STACK))
    artifacts = next(i for i in resources(vpc, "AWS::S3::Bucket") if "Artifacts" in i)
    stop_rule = next(i for i in resources(monitoring, "AWS::Events::Rule") if "UnexpectedTaskStops" in i)
    api_name = "mlflow-iam" if iam else "mlflow"
    (api,) = (i for i, r in resources(gateway, "AWS::ApiGatewayV2::Api").items() if r["Properties"]["Name"] == api_name)
    container_port = names.NGINX_IAM_PORT if iam else names.NGINX_PORT
    (group,) = (
        i
        for i, r in resources(vpc, "AWS::ElasticLoadBalancingV2::TargetGroup").items()
        if r["Properties"]["Port"] == container_port
    )
    return {
        "ApiId": {"Ref": api},
        "Stage": "$default",
        "LoadBalancer": {
            "Fn::GetAtt": [only(vpc, "AWS::ElasticLoadBalancingV2::LoadBalancer")[0], "LoadBalancerFullName"]
        },
        "TargetGroup": {"Fn::GetAtt": [group, "TargetGroupFullName"]},
        "ClusterName": {"Ref": only(vpc, "AWS::ECS::Cluster")[0]},
        "ServiceName": {"Fn::GetAtt": [only(vpc, "AWS::ECS::Service")[0], "Name"]},
        "DBClusterIdentifier": {"Ref": only(vpc, "AWS::RDS::DBCluster")[0]},
        "BucketName": {"Ref": artifacts},
        "FilterId": "EntireBucket",
        "RuleName": {"Ref": stop_rule},
    }


def test_one_alarm_per_rule_and_nothing_else(monitoring_template: Template) -> None:
    assert set(_alarms(monitoring_template)) == {rule.alarm_name for rule in ALARMS} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_alarm_watches_its_metric_with_its_threshold_and_notifies_the_topic(
    name: str, templates: dict[str, Template]
) -> None:
    _assert_alarm(name, EXPECTED[name], templates, _dimension_sources(templates))


@pytest.mark.parametrize(("name", "twin"), sorted(IAM_TWINS.items()))
def test_iam_sign_in_alarm_watches_the_iam_path_as_its_twin_watches_the_password_path(
    name: str, twin: str, accounts_templates: dict[str, Template]
) -> None:
    _assert_alarm(name, EXPECTED[twin], accounts_templates, _dimension_sources(accounts_templates, iam=True))


@pytest.mark.parametrize("name", sorted(IAM_TWINS.values()))
def test_with_iam_sign_in_the_password_alarms_still_watch_the_password_path(
    name: str, accounts_templates: dict[str, Template]
) -> None:
    _assert_alarm(name, EXPECTED[name], accounts_templates, _dimension_sources(accounts_templates))


def test_iam_sign_in_adds_its_twins_and_nothing_else(
    accounts_templates: dict[str, Template], accounts_password_templates: dict[str, Template]
) -> None:
    with_iam = set(_alarms(accounts_templates[names.MONITORING_STACK]))
    assert with_iam == set(EXPECTED) | set(IAM_TWINS)
    assert {rule.alarm_name for rule in IAM_SIGN_IN_ALARMS} == set(IAM_TWINS)
    # iam_sign_in=false: no IAM API, no twins.
    assert set(_alarms(accounts_password_templates[names.MONITORING_STACK])) == set(EXPECTED)


def _assert_alarm(
    name: str, expected: tuple[Any, ...], templates: dict[str, Template], sources: dict[str, Any]
) -> None:
    threshold, comparison, period, evaluations, datapoints, missing, metrics, expression = expected
    template = templates[names.MONITORING_STACK]
    alarm = _alarms(template)[name]
    assert alarm["Threshold"] == threshold
    assert alarm["ComparisonOperator"] == comparison
    assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (evaluations, datapoints)
    assert alarm["TreatMissingData"] == missing

    topic_id, _ = only(template, "AWS::SNS::Topic")
    assert alarm["AlarmActions"] == [{"Ref": topic_id}]
    assert alarm["OKActions"] == [{"Ref": topic_id}]

    stats = _metric_stats(alarm)
    assert {(s["namespace"], s["name"], s["stat"]): tuple(sorted(s["dims"])) for s in stats} == {
        key: tuple(sorted(dims)) for key, dims in metrics.items()
    }
    for stat in stats:
        assert stat["period"] == period
        for dimension, value in stat["dims"].items():
            assert follow_output(value, templates) == sources[dimension], (name, dimension)
    assert _expression(alarm) == expression


def test_alarm_descriptions_carry_the_reasoning(monitoring_template: Template) -> None:
    alarms = _alarms(monitoring_template)
    for rule in ALARMS:
        assert rule.reason in alarms[rule.alarm_name]["AlarmDescription"]


def test_iam_sign_in_alarm_descriptions_name_their_twin(accounts_templates: dict[str, Template]) -> None:
    alarms = _alarms(accounts_templates[names.MONITORING_STACK])
    for rule in IAM_SIGN_IN_ALARMS:
        description = alarms[rule.alarm_name]["AlarmDescription"]
        assert description.startswith(rule.watches) and rule.reason in description
        assert f"As `{IAM_TWINS[rule.alarm_name]}`" in description


def test_aurora_thresholds_follow_the_capacity_range() -> None:
    # DAY_TWO_VARIANT: 1-16 ACU
    alarms = _alarms(synth_templates(**DAY_TWO_VARIANT)[names.MONITORING_STACK])
    assert alarms["mlflow-aurora-capacity-at-max"]["Threshold"] == 14.4
    assert alarms["mlflow-aurora-connections"]["Threshold"] == 0.8 * 3360


@pytest.mark.parametrize(
    ("min_acu", "max_acu", "expected"),
    [
        # The Aurora User Guide's table for Aurora PostgreSQL Serverless v2.
        (0, 1, 189),
        (0, 4, 823),
        (1, 8, 1669),
        (1, 16, 3360),
        (1, 32, 5000),
        (1, 256, 5000),
        # A floor of 0 or 0.5 ACU caps it at 2000.
        (0.5, 16, 2000),
        (0, 64, 2000),
        # Between table rows the limit follows memory, i.e. the ACU ceiling, linearly.
        (0, 2, 400),
        (0, 6, 1246),
    ],
)
def test_max_connections_follow_the_aurora_table(min_acu: float, max_acu: float, expected: int) -> None:
    assert aurora_postgres_max_connections(min_acu, max_acu) == expected


# --- topic -----------------------------------------------------------------


def test_topic_is_encrypted_with_a_rotated_key_the_publishers_may_use(monitoring_template: Template) -> None:
    key_id, key = only(monitoring_template, "AWS::KMS::Key")
    assert key["Properties"]["EnableKeyRotation"] is True
    assert props(monitoring_template, "AWS::SNS::Topic")["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    statements = key["Properties"]["KeyPolicy"]["Statement"]
    publishers = [s for s in statements if s.get("Sid") == "AlarmPublishersEncrypt"]
    assert len(publishers) == 1
    assert sorted(publishers[0]["Principal"]["Service"]) == ["cloudwatch.amazonaws.com", "events.amazonaws.com"]
    assert sorted(publishers[0]["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey*"]


def test_topic_refuses_publishes_without_tls_and_admits_only_our_alarms_and_rules(
    monitoring_template: Template,
) -> None:
    topic_id, _ = only(monitoring_template, "AWS::SNS::Topic")
    policy = props(monitoring_template, "AWS::SNS::TopicPolicy")
    assert policy["Topics"] == [{"Ref": topic_id}]
    statements = policy["PolicyDocument"]["Statement"]
    deny = [s for s in statements if s["Effect"] == "Deny"]
    assert len(deny) == 1 and deny[0]["Principal"] == "*"
    assert deny[0]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}

    allows = [s for s in statements if s["Effect"] == "Allow"]
    assert all(s["Action"] == "sns:Publish" and s["Resource"] == {"Ref": topic_id} for s in allows)
    alarms = [s for s in allows if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}]
    assert len(alarms) == 1
    assert alarms[0]["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    assert json.dumps(alarms[0]["Condition"]["ArnLike"]["aws:SourceArn"]).endswith(':alarm:mlflow-*"]]}')
    rules = {s["Condition"]["ArnEquals"]["aws:SourceArn"]["Fn::GetAtt"][0] for s in allows if s not in alarms}
    assert rules == set(resources(monitoring_template, "AWS::Events::Rule"))


def test_no_subscription_unless_an_alarm_email_is_set(monitoring_template: Template) -> None:
    assert resources(monitoring_template, "AWS::SNS::Subscription") == {}
    template = synth_templates(**DAY_TWO_VARIANT)[names.MONITORING_STACK]  # alarm_email=ops@example.com
    topic_id, _ = only(template, "AWS::SNS::Topic")
    subscription = props(template, "AWS::SNS::Subscription")
    assert subscription == {"Endpoint": "ops@example.com", "Protocol": "email", "TopicArn": {"Ref": topic_id}}


# --- ECS events ------------------------------------------------------------


def _rule(template: Template, fragment: str) -> dict[str, Any]:
    return next(r["Properties"] for i, r in resources(template, "AWS::Events::Rule").items() if fragment in i)


def test_unexpected_task_stops_are_sent_with_their_reason(templates: dict[str, Template]) -> None:
    template, vpc = templates[names.MONITORING_STACK], templates[names.VPC_STACK]
    rule = _rule(template, "UnexpectedTaskStops")
    pattern = rule["EventPattern"]
    assert pattern["source"] == ["aws.ecs"] and pattern["detail-type"] == ["ECS Task State Change"]
    detail = pattern["detail"]
    assert detail["lastStatus"] == ["STOPPED"]
    # Deployments and scale-in stop tasks with this reason; everything else is news.
    assert detail["stoppedReason"] == [{"anything-but": {"prefix": "Scaling activity initiated by"}}]
    cluster_id, _ = only(vpc, "AWS::ECS::Cluster")
    service_id, _ = only(vpc, "AWS::ECS::Service")
    assert [follow_output(v, templates) for v in detail["clusterArn"]] == [{"Fn::GetAtt": [cluster_id, "Arn"]}]
    prefix, service_name = detail["group"][0]["Fn::Join"][1]
    assert prefix == "service:" and follow_output(service_name, templates) == {"Fn::GetAtt": [service_id, "Name"]}

    topic_id, _ = only(template, "AWS::SNS::Topic")
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Ref": topic_id}
    transformer = target["InputTransformer"]
    assert set(transformer["InputPathsMap"].values()) == {
        "$.detail.stoppedReason",
        "$.detail.stopCode",
        "$.detail.taskArn",
    }
    assert "<detail-stoppedReason>" in transformer["InputTemplate"]


def test_failed_rollouts_are_sent(templates: dict[str, Template]) -> None:
    template = templates[names.MONITORING_STACK]
    rule = _rule(template, "FailedDeployments")
    pattern = rule["EventPattern"]
    assert pattern["detail-type"] == ["ECS Deployment State Change"]
    assert pattern["detail"] == {"eventName": ["SERVICE_DEPLOYMENT_FAILED"]}
    service_id, _ = only(templates[names.VPC_STACK], "AWS::ECS::Service")
    assert [follow_output(v, templates) for v in pattern["resources"]] == [{"Ref": service_id}]
    topic_id, _ = only(template, "AWS::SNS::Topic")
    assert [t["Arn"] for t in rule["Targets"]] == [{"Ref": topic_id}]


# --- dashboard -------------------------------------------------------------


def test_dashboard_follows_the_request_path_and_shows_every_alarm(monitoring_template: Template) -> None:
    dashboard = props(monitoring_template, "AWS::CloudWatch::Dashboard")
    assert dashboard["DashboardName"] == names.DASHBOARD_NAME
    body = json.dumps(dashboard["DashboardBody"])
    positions = [
        body.find(f'\\"{namespace}\\"')
        for namespace in ("AWS/ApiGateway", "AWS/ApplicationELB", "AWS/ECS", "AWS/RDS", "AWS/S3")
    ]
    assert -1 not in positions and positions == sorted(positions), "rows follow API -> ALB -> tasks -> Aurora -> S3"
    for alarm_id in resources(monitoring_template, "AWS::CloudWatch::Alarm"):
        assert f'"{alarm_id}"' in body, f"alarm widget lacks {alarm_id}"


def test_container_insights_is_off_by_default_and_nothing_reads_it(templates: dict[str, Template]) -> None:
    settings = props(templates[names.VPC_STACK], "AWS::ECS::Cluster")["ClusterSettings"]
    assert {"Name": "containerInsights", "Value": "disabled"} in settings
    # No alarm or graph would have data: none may read its namespace.
    assert "ECS/ContainerInsights" not in json.dumps(templates[names.MONITORING_STACK])


def test_container_insights_enabled_adds_its_graph_and_the_alarm_follows_the_floor() -> None:
    templates = synth_templates(container_insights="enhanced", min_task_count=3, desired_task_count=3)
    settings = props(templates[names.VPC_STACK], "AWS::ECS::Cluster")["ClusterSettings"]
    assert {"Name": "containerInsights", "Value": "enhanced"} in settings
    monitoring = templates[names.MONITORING_STACK]
    body = json.dumps(props(monitoring, "AWS::CloudWatch::Dashboard")["DashboardBody"])
    assert '\\"ECS/ContainerInsights\\"' in body and "Tasks: running and desired" in body
    assert _expression(_alarms(monitoring)["mlflow-tasks-below-desired"]) == "3 - FILL(healthy, 0)"


def test_topic_and_dashboard_are_published(monitoring_template: Template) -> None:
    topic_id, _ = only(monitoring_template, "AWS::SNS::Topic")
    outputs = monitoring_template["Outputs"]
    assert outputs[names.OUTPUT_ALARM_TOPIC]["Value"] == {"Ref": topic_id}
    assert f"#dashboards:name={names.DASHBOARD_NAME}" in json.dumps(outputs[names.OUTPUT_DASHBOARD_URL]["Value"])


def _references(value: Any) -> list[Any]:
    """Every cross-stack reference inside a template value (e.g. a dashboard body)."""
    if isinstance(value, dict):
        if "Fn::GetStackOutput" in value:
            return [value]
        return [found for item in value.values() for found in _references(item)]
    if isinstance(value, list):
        return [found for item in value for found in _references(item)]
    return []


def test_with_iam_sign_in_the_dashboard_shows_the_iam_api_and_listener_and_their_alarms(
    accounts_templates: dict[str, Template], monitoring_template: Template
) -> None:
    template = accounts_templates[names.MONITORING_STACK]
    dashboard = props(template, "AWS::CloudWatch::Dashboard")["DashboardBody"]
    body = json.dumps(dashboard)
    for title in (
        "IAM API (mlflow-iam): requests and errors",
        "IAM API (mlflow-iam): latency (ms)",
        "IAM API (mlflow-iam): 5xx rate (%)",
        "ALB, IAM listener: healthy and unhealthy targets",
        "ALB, IAM listener: target 5xx",
    ):
        assert title in body
    for alarm_id in resources(template, "AWS::CloudWatch::Alarm"):
        assert f'"{alarm_id}"' in body, f"alarm widget lacks {alarm_id}"
    # The graphs read the IAM API and the IAM target group, not only the password path's.
    sources = {json.dumps(follow_output(ref, accounts_templates)) for ref in _references(dashboard)}
    iam = _dimension_sources(accounts_templates, iam=True)
    assert json.dumps(iam["ApiId"]) in sources and json.dumps(iam["TargetGroup"]) in sources
    assert '\\"HTTPCode_Target_5XX_Count\\"' in body
    # Without IAM sign-in the dashboard has no such row.
    assert "IAM" not in json.dumps(props(monitoring_template, "AWS::CloudWatch::Dashboard"))
