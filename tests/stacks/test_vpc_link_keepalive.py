"""The daily request that keeps the HTTP API's VPC link ACTIVE."""

from stacks import names
from stacks.components.vpc_link_keepalive import HEALTH_PATH
from tests.stacks.helpers import Template, ref_id, render, resources
from tests.synth import synth_templates


def keepalive_functions(template: Template) -> dict[str, dict]:
    return {
        name: function
        for name, function in resources(template, "AWS::Lambda::Function").items()
        if "VpcLinkKeepalive" in name
    }


def test_a_daily_rule_calls_the_health_path_through_the_api(gateway_template: Template) -> None:
    ((name, function),) = keepalive_functions(gateway_template).items()
    url = render(function["Properties"]["Environment"]["Variables"]["HEALTH_URL"])
    (api,) = resources(gateway_template, "AWS::ApiGatewayV2::Api")
    assert url == "${%s.ApiEndpoint}%s" % (api, HEALTH_PATH)
    rules = [
        rule["Properties"]
        for rule in resources(gateway_template, "AWS::Events::Rule").values()
        if any(ref_id(target["Arn"]) == name for target in rule["Properties"]["Targets"])
    ]
    assert [rule["ScheduleExpression"] for rule in rules] == ["rate(1 day)"]


def test_the_function_may_only_write_its_own_logs(gateway_template: Template) -> None:
    ((_, function),) = keepalive_functions(gateway_template).items()
    role = ref_id(function["Properties"]["Role"])
    role_props = resources(gateway_template, "AWS::IAM::Role")[role]["Properties"]
    assert "ManagedPolicyArns" not in role_props
    actions = {
        action
        for policy in role_props["Policies"]
        for statement in policy["PolicyDocument"]["Statement"]
        for action in ([statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"])
    }
    assert actions == {"logs:CreateLogStream", "logs:PutLogEvents"}


def test_the_setting_turns_it_off() -> None:
    templates = synth_templates(vpc_link_keepalive=False)
    assert keepalive_functions(templates[names.GATEWAY_STACK]) == {}
