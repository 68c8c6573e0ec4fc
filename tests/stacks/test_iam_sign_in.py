"""IAM sign-in as synthesized: the SigV4-authorised API, its listener, the task's settings, the profiles' roles.

``iam_templates`` is accounts mode (IAM sign-in on by default) with a CI principal; the
default templates (shared mode) show what stays when it is off.
"""

import json
from typing import Any

import pytest

from stacks import names
from stacks.components.http_gateway import ACCESS_LOG_FIELDS
from stacks.components.mlflow_account_provisioner import RESOURCE_TYPE
from stacks.components.tracking_service import IAM_HTTP_PORT
from stacks.iam_callers import CALLER_HEADER, principals_from_profile_parameter
from tests.stacks.helpers import (
    Template,
    egress_rules,
    ingress_rules,
    policy_statements,
    ref_id,
    resources,
    service_task_definition,
    statement_actions,
)
from tests.synth import synth_templates

CI_PRINCIPALS = {"arn:aws:iam::123456789012:role/ci": "ci"}
PROFILES = ("alice", "bob")
PUBLIC_ORIGIN = {
    "overwrite:header.X-Public-Host": "$context.domainName",
    "overwrite:header.X-Public-Proto": "https",
    "overwrite:header.X-Api-Request-Id": "$context.requestId",
}


@pytest.fixture(scope="module")
def iam_templates() -> dict[str, Template]:
    return synth_templates(
        auth_mode="accounts", user_profiles=",".join(PROFILES), iam_principals=json.dumps(CI_PRINCIPALS)
    )


@pytest.fixture(scope="module")
def gateway(iam_templates: dict[str, Template]) -> Template:
    return iam_templates[names.GATEWAY_STACK]


@pytest.fixture(scope="module")
def vpc(iam_templates: dict[str, Template]) -> Template:
    return iam_templates[names.VPC_STACK]


@pytest.fixture(scope="module")
def studio(iam_templates: dict[str, Template]) -> Template:
    return iam_templates[names.STUDIO_STACK]


def _api_id(template: Template, name: str) -> str:
    (api_id,) = [
        key for key, api in resources(template, "AWS::ApiGatewayV2::Api").items() if api["Properties"]["Name"] == name
    ]
    return api_id


def _of_api(template: Template, resource_type: str, api_id: str) -> dict[str, Any]:
    (found,) = [
        r["Properties"]
        for r in resources(template, resource_type).values()
        if r["Properties"]["ApiId"] == {"Ref": api_id}
    ]
    return found


def _output_name(value: Any) -> str:
    return value["Fn::GetStackOutput"]["OutputName"]


# --- the gateway stack ---------------------------------------------------------


def test_iam_api_authorises_its_one_route_with_sigv4(gateway: Template) -> None:
    iam_api = _api_id(gateway, "mlflow-iam")
    route = _of_api(gateway, "AWS::ApiGatewayV2::Route", iam_api)
    assert (route["RouteKey"], route["AuthorizationType"]) == ("$default", "AWS_IAM")
    assert len(resources(gateway, "AWS::ApiGatewayV2::Route")) == 2
    # The password API's route stays open to the proxy (its caller is checked behind it).
    password_route = _of_api(gateway, "AWS::ApiGatewayV2::Route", _api_id(gateway, "mlflow"))
    assert password_route["AuthorizationType"] == "NONE"


def test_iam_api_writes_the_verified_caller_and_the_password_api_drops_it(gateway: Template) -> None:
    iam_integration = _of_api(gateway, "AWS::ApiGatewayV2::Integration", _api_id(gateway, "mlflow-iam"))
    assert iam_integration["RequestParameters"] == {
        **PUBLIC_ORIGIN,
        f"overwrite:header.{CALLER_HEADER}": "$context.identity.userArn",
    }
    password_integration = _of_api(gateway, "AWS::ApiGatewayV2::Integration", _api_id(gateway, "mlflow"))
    assert password_integration["RequestParameters"] == {**PUBLIC_ORIGIN, f"remove:header.{CALLER_HEADER}": ""}


def test_both_apis_share_the_vpc_link_and_reach_their_own_listeners(gateway: Template) -> None:
    (link_id,) = resources(gateway, "AWS::ApiGatewayV2::VpcLink")
    iam_integration = _of_api(gateway, "AWS::ApiGatewayV2::Integration", _api_id(gateway, "mlflow-iam"))
    password_integration = _of_api(gateway, "AWS::ApiGatewayV2::Integration", _api_id(gateway, "mlflow"))
    for integration in (iam_integration, password_integration):
        assert integration["ConnectionId"] == {"Ref": link_id}
        assert (integration["ConnectionType"], integration["IntegrationMethod"]) == ("VPC_LINK", "ANY")
    assert "LoadBalancerIam" in _output_name(iam_integration["IntegrationUri"])
    assert "LoadBalancerHttp" in _output_name(password_integration["IntegrationUri"])
    assert "TlsConfig" not in iam_integration  # HTTP listeners without a domain


def test_vpc_link_reaches_the_two_listener_ports_only(gateway: Template) -> None:
    egress = [r for r in egress_rules(gateway) if r.get("CidrIp") != "255.255.255.255/32"]
    assert sorted((r["FromPort"], r["ToPort"]) for r in egress) == [(80, 80), (IAM_HTTP_PORT, IAM_HTTP_PORT)]
    ingress = ingress_rules(gateway)
    assert sorted((r["FromPort"], r["ToPort"]) for r in ingress) == [(80, 80), (IAM_HTTP_PORT, IAM_HTTP_PORT)]
    assert all("LoadBalancerSecurityGroup" in _output_name(r["GroupId"]) for r in ingress)


def test_iam_stage_is_throttled_and_logs_the_caller(gateway: Template) -> None:
    stage = _of_api(gateway, "AWS::ApiGatewayV2::Stage", _api_id(gateway, "mlflow-iam"))
    assert (stage["StageName"], stage["AutoDeploy"]) == ("$default", True)
    assert stage["DefaultRouteSettings"]["ThrottlingRateLimit"] == 100
    assert stage["DefaultRouteSettings"]["ThrottlingBurstLimit"] == 200
    fields = json.loads(stage["AccessLogSettings"]["Format"])
    assert fields == {**ACCESS_LOG_FIELDS, "caller": "$context.identity.userArn"}
    log_group_id = ref_id(stage["AccessLogSettings"]["DestinationArn"])
    password_stage = _of_api(gateway, "AWS::ApiGatewayV2::Stage", _api_id(gateway, "mlflow"))
    assert log_group_id in resources(gateway, "AWS::Logs::LogGroup")
    assert log_group_id != ref_id(password_stage["AccessLogSettings"]["DestinationArn"])


def test_iam_tracking_url_is_an_output_and_a_parameter(gateway: Template) -> None:
    endpoint = {"Fn::GetAtt": [_api_id(gateway, "mlflow-iam"), "ApiEndpoint"]}
    assert gateway["Outputs"][names.OUTPUT_IAM_TRACKING_URL]["Value"] == endpoint
    parameters = {
        p["Properties"]["Name"]: p["Properties"]["Value"] for p in resources(gateway, "AWS::SSM::Parameter").values()
    }
    assert parameters[names.SSM_IAM_TRACKING_URL] == endpoint
    assert parameters[names.SSM_TRACKING_URL] == {"Fn::GetAtt": [_api_id(gateway, "mlflow"), "ApiEndpoint"]}


def test_invoke_policy_names_the_iam_api_alone(gateway: Template) -> None:
    (policy,) = resources(gateway, "AWS::IAM::ManagedPolicy").values()
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert (statement["Effect"], statement["Action"]) == ("Allow", "execute-api:Invoke")
    parts = statement["Resource"]["Fn::Join"][1]
    assert {"Ref": _api_id(gateway, "mlflow-iam")} in parts and parts[-1] == "/*"
    assert {"Ref": _api_id(gateway, "mlflow")} not in parts


def test_off_there_is_one_api_and_the_password_api_still_drops_the_header(
    templates: dict[str, Template],
) -> None:
    gateway = templates[names.GATEWAY_STACK]
    (api,) = resources(gateway, "AWS::ApiGatewayV2::Api").values()
    assert api["Properties"]["Name"] == "mlflow"
    (integration,) = resources(gateway, "AWS::ApiGatewayV2::Integration").values()
    assert integration["Properties"]["RequestParameters"][f"remove:header.{CALLER_HEADER}"] == ""
    assert names.OUTPUT_IAM_TRACKING_URL not in gateway["Outputs"]
    assert not resources(gateway, "AWS::IAM::ManagedPolicy")
    vpc = templates[names.VPC_STACK]
    assert len(resources(vpc, "AWS::ElasticLoadBalancingV2::Listener")) == 1
    assert "MLFLOW_IAM_SIGN_IN" not in json.dumps(service_task_definition(vpc))
    assert "NGINX_IAM_LISTEN" not in json.dumps(service_task_definition(vpc))


# --- the VPC stack: listener, target group, task -------------------------------


def test_second_listener_forwards_to_nginx_iam_port_with_the_same_health_check(vpc: Template) -> None:
    listeners = {
        r["Properties"]["Port"]: r["Properties"]
        for r in resources(vpc, "AWS::ElasticLoadBalancingV2::Listener").values()
    }
    assert sorted(listeners) == [80, IAM_HTTP_PORT]
    assert {listener["Protocol"] for listener in listeners.values()} == {"HTTP"}
    groups = {
        logical_id: r["Properties"]
        for logical_id, r in resources(vpc, "AWS::ElasticLoadBalancingV2::TargetGroup").items()
    }
    forwarded = {port: listener["DefaultActions"][0]["TargetGroupArn"]["Ref"] for port, listener in listeners.items()}
    first, iam = groups[forwarded[80]], groups[forwarded[IAM_HTTP_PORT]]
    assert (first["Port"], iam["Port"]) == (names.NGINX_PORT, names.NGINX_IAM_PORT)
    health = ("HealthCheckPath", "HealthCheckIntervalSeconds", "HealthyThresholdCount", "Matcher")
    assert {key: iam[key] for key in health} == {key: first[key] for key in health}
    assert iam["HealthCheckPath"] == names.HEALTH_CHECK_PATH
    service = next(iter(resources(vpc, "AWS::ECS::Service").values()))["Properties"]
    registered = {
        (lb["ContainerName"], lb["ContainerPort"], lb["TargetGroupArn"]["Ref"]) for lb in service["LoadBalancers"]
    }
    assert registered == {
        ("nginx", names.NGINX_PORT, forwarded[80]),
        ("nginx", names.NGINX_IAM_PORT, forwarded[IAM_HTTP_PORT]),
    }


def test_tasks_admit_the_alb_on_both_nginx_ports_only(vpc: Template) -> None:
    task_ingress = [r for r in ingress_rules(vpc) if "TaskSecurityGroup" in json.dumps(r.get("GroupId"))]
    assert sorted((r["FromPort"], r["ToPort"]) for r in task_ingress) == [
        (names.NGINX_PORT, names.NGINX_PORT),
        (names.NGINX_IAM_PORT, names.NGINX_IAM_PORT),
    ]
    assert all("LoadBalancerSecurityGroup" in json.dumps(r["SourceSecurityGroupId"]) for r in task_ingress)


def _containers(vpc: Template) -> dict[str, dict[str, Any]]:
    return {c["Name"]: c for c in service_task_definition(vpc)["ContainerDefinitions"]}


def _environment(container: dict[str, Any]) -> dict[str, Any]:
    return {e["Name"]: e["Value"] for e in container.get("Environment", [])}


def test_containers_get_the_iam_settings(vpc: Template) -> None:
    nginx, mlflow = _containers(vpc)["nginx"], _containers(vpc)["mlflow"]
    assert _environment(nginx)["NGINX_IAM_LISTEN"] == str(names.NGINX_IAM_PORT)
    assert sorted(p["ContainerPort"] for p in nginx["PortMappings"]) == [names.NGINX_PORT, names.NGINX_IAM_PORT]
    environment = _environment(mlflow)
    assert environment["MLFLOW_IAM_SIGN_IN"] == "true"
    assert json.loads(environment["MLFLOW_IAM_PRINCIPALS"]) == CI_PRINCIPALS
    assert environment["MLFLOW_IAM_PRINCIPALS_PATH"] == names.SSM_IAM_PRINCIPALS
    # Not secrets: nothing IAM-related travels as an ECS secret.
    assert not any("IAM" in s["Name"] for c in _containers(vpc).values() for s in c.get("Secrets", []))


def test_task_role_reads_the_principals_path_and_nothing_else_of_ssm(vpc: Template) -> None:
    ssm = [s for s in policy_statements(vpc) if "ssm:" in json.dumps(s["Action"])]
    task_policy_ssm = [s for s in ssm if s.get("Sid") == "ReadIamPrincipals"]
    (statement,) = task_policy_ssm
    assert statement["Action"] == "ssm:GetParametersByPath"
    parts = statement["Resource"]["Fn::Join"][1]
    assert parts[-1] == f":parameter{names.SSM_IAM_PRINCIPALS}"
    assert "*" not in json.dumps(statement["Resource"])


# --- the Studio stack ----------------------------------------------------------


def _role_ids(studio: Template) -> dict[str, str]:
    """Kind -> logical id for alice's roles, plus the serving role."""
    roles = resources(studio, "AWS::IAM::Role")
    return {
        kind: next(logical_id for logical_id in roles if logical_id.startswith(prefix))
        for kind, prefix in (
            ("execution", "UseraliceExecutionRole"),
            ("training", "UseraliceTrainingRole"),
            ("serving", "ServingRole"),
        )
    }


def test_each_profile_has_its_principal_parameter(studio: Template) -> None:
    parameters = {p["Properties"]["Name"]: p["Properties"] for p in resources(studio, "AWS::SSM::Parameter").values()}
    for profile in PROFILES:
        value = parameters[f"{names.SSM_IAM_PRINCIPALS}/{profile}"]["Value"]
        parts = value["Fn::Join"][1]
        role_ids = [part["Fn::GetAtt"][0] for part in parts if isinstance(part, dict)]
        assert [role_id.split("Role")[0] for role_id in role_ids] == [
            f"User{profile}Execution",
            f"User{profile}Training",
        ]
        # With the role ARNs filled in, it is what the server parses.
        filled = "".join(
            part if isinstance(part, str) else f"arn:aws:iam::123456789012:role/{part['Fn::GetAtt'][0]}"
            for part in parts
        )
        assert principals_from_profile_parameter(filled) == {
            f"123456789012:role/{role_id}": profile for role_id in role_ids
        }


def test_only_the_profiles_roles_may_invoke_the_iam_api(studio: Template) -> None:
    attached = {
        logical_id: json.dumps(role["Properties"].get("ManagedPolicyArns", []))
        for logical_id, role in resources(studio, "AWS::IAM::Role").items()
    }
    invokers = sorted(logical_id for logical_id, arns in attached.items() if "IamGatewayInvokePolicy" in arns)
    expected = sorted(
        role_id
        for profile in PROFILES
        for role_id in attached
        if role_id.startswith((f"User{profile}ExecutionRole", f"User{profile}TrainingRole"))
    )
    assert invokers == expected and len(expected) == 2 * len(PROFILES)
    assert _role_ids(studio)["serving"] not in invokers
    assert not [s for s in policy_statements(studio) if "execute-api" in json.dumps(statement_actions(s))]


def test_profile_roles_cannot_read_their_login(studio: Template) -> None:
    assert not [s for s in policy_statements(studio) if s.get("Sid") == "ReadMlflowCredentials"]
    for profile in PROFILES:
        (policy,) = [
            r["Properties"]["ResourcePolicy"]
            for logical_id, r in resources(studio, "AWS::SecretsManager::ResourcePolicy").items()
            if logical_id.startswith(f"User{profile}Mlflow")
        ]
        (statement,) = policy["Statement"]
        assert (statement["Effect"], statement["Action"]) == ("Deny", "secretsmanager:GetSecretValue")
        denied = [ref_id(arn) for arn in statement["Condition"]["StringEquals"]["aws:PrincipalArn"]]
        assert [role_id.split("Role")[0] for role_id in denied] == [f"User{profile}Execution", f"User{profile}Training"]
    # The accounts are still provisioned: the people's browser login.
    accounts = [r["Properties"]["Username"] for r in resources(studio, RESOURCE_TYPE).values()]
    assert sorted(accounts) == sorted(PROFILES)


def test_nothing_but_the_vpc_link_reaches_the_iam_listener(iam_templates: dict[str, Template]) -> None:
    """The listener trusts the caller header: the account provisioner and other in-VPC clients use the first one."""
    (link_group,) = resources(iam_templates[names.GATEWAY_STACK], "AWS::EC2::SecurityGroup")
    opened = [
        (stack, rule)
        for stack, template in iam_templates.items()
        for rule in ingress_rules(template)
        if rule.get("FromPort", 0) <= IAM_HTTP_PORT <= rule.get("ToPort", 65535)
        and "LoadBalancerSecurityGroup" in json.dumps(rule["GroupId"])
    ]
    assert [(stack, ref_id(rule["SourceSecurityGroupId"])) for stack, rule in opened] == [
        (names.GATEWAY_STACK, link_group)
    ]
