"""HttpGatewayStack: VPC link, HTTP API with the ALB integration, logged and throttled stage."""

import json

from stacks import names
from stacks.components.artifact_cors import artifact_cors_rules
from stacks.components.http_gateway import ACCESS_LOG_FIELDS
from stacks.iam_callers import CALLER_HEADER
from tests.stacks.helpers import Template, egress_rules, ingress_rules, only, props, ref_id, resources
from tests.synth import synth_templates


def _output_name(value: dict) -> str:
    return value["Fn::GetStackOutput"]["OutputName"]


def test_vpc_link_uses_private_subnets_and_its_own_group(gateway_template: Template) -> None:
    link = props(gateway_template, "AWS::ApiGatewayV2::VpcLink")
    group_id, _ = only(gateway_template, "AWS::EC2::SecurityGroup")
    assert [ref_id(g) for g in link["SecurityGroupIds"]] == [group_id]
    assert len(link["SubnetIds"]) == 2
    assert all("privateSubnet" in _output_name(subnet) for subnet in link["SubnetIds"])


def test_vpc_link_may_reach_only_the_alb_listener_port(gateway_template: Template, vpc_template: Template) -> None:
    group_id, group = only(gateway_template, "AWS::EC2::SecurityGroup")
    assert "SecurityGroupIngress" not in group["Properties"]
    # allow_all_outbound=False renders as a deny-all placeholder rule plus the one real rule.
    egress = [r for r in egress_rules(gateway_template) if r.get("CidrIp") != "255.255.255.255/32"]
    assert [(r["FromPort"], r["ToPort"]) for r in egress] == [(80, 80)]
    assert "LoadBalancerSecurityGroup" in _output_name(egress[0]["DestinationSecurityGroupId"])

    # The one ingress rule on the ALB's group lives here and names the VPC link's group.
    ingress = ingress_rules(gateway_template)
    assert len(ingress) == 1
    assert "LoadBalancerSecurityGroup" in _output_name(ingress[0]["GroupId"])
    assert ref_id(ingress[0]["SourceSecurityGroupId"]) == group_id
    assert (ingress[0]["FromPort"], ingress[0]["ToPort"]) == (80, 80)


def test_default_route_proxies_everything_to_the_alb_listener(gateway_template: Template) -> None:
    api = props(gateway_template, "AWS::ApiGatewayV2::Api")
    assert api["ProtocolType"] == "HTTP"
    integration_id, integration = only(gateway_template, "AWS::ApiGatewayV2::Integration")
    properties = integration["Properties"]
    assert properties["IntegrationType"] == "HTTP_PROXY"
    assert properties["ConnectionType"] == "VPC_LINK"
    assert properties["IntegrationMethod"] == "ANY"
    assert "LoadBalancerHttp" in _output_name(properties["IntegrationUri"])
    link_id, _ = only(gateway_template, "AWS::ApiGatewayV2::VpcLink")
    assert properties["ConnectionId"] == {"Ref": link_id}
    route = props(gateway_template, "AWS::ApiGatewayV2::Route")
    assert route["RouteKey"] == "$default"
    assert integration_id in json.dumps(route["Target"])


def test_stage_is_access_logged_and_throttled(gateway_template: Template) -> None:
    stage = props(gateway_template, "AWS::ApiGatewayV2::Stage")
    assert stage["StageName"] == "$default"
    assert stage["AutoDeploy"] is True
    assert stage["DefaultRouteSettings"]["ThrottlingRateLimit"] == 100
    assert stage["DefaultRouteSettings"]["ThrottlingBurstLimit"] == 200
    log_group_id = ref_id(stage["AccessLogSettings"]["DestinationArn"])
    log_group = resources(gateway_template, "AWS::Logs::LogGroup")[log_group_id]
    assert log_group["Properties"]["RetentionInDays"] == 30
    log_format = json.loads(stage["AccessLogSettings"]["Format"])
    assert log_format == ACCESS_LOG_FIELDS
    assert "authorization" not in stage["AccessLogSettings"]["Format"].lower()


def test_throttling_follows_configuration() -> None:
    template = synth_templates(api_throttle_rate_limit=25, api_throttle_burst_limit=50)[names.GATEWAY_STACK]
    settings = props(template, "AWS::ApiGatewayV2::Stage")["DefaultRouteSettings"]
    assert (settings["ThrottlingRateLimit"], settings["ThrottlingBurstLimit"]) == (25, 50)


def test_tracking_url_is_an_output_and_a_parameter(gateway_template: Template) -> None:
    api_id, _ = only(gateway_template, "AWS::ApiGatewayV2::Api")
    endpoint = {"Fn::GetAtt": [api_id, "ApiEndpoint"]}
    assert gateway_template["Outputs"][names.OUTPUT_TRACKING_URL]["Value"] == endpoint
    parameter = props(gateway_template, "AWS::SSM::Parameter")
    assert parameter["Name"] == "/mlflow/tracking-url"
    assert parameter["Value"] == endpoint


def test_gateway_creates_no_public_ingress(gateway_template: Template) -> None:
    assert not resources(gateway_template, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    assert all(r.get("CidrIp") is None for r in ingress_rules(gateway_template))


def test_integration_overwrites_the_public_host_and_scheme_headers(gateway_template: Template) -> None:
    """nginx's same-origin check and MLflow's Host come from these, the audit line's api_request_id from
    the last; a client cannot set them."""
    _, integration = only(gateway_template, "AWS::ApiGatewayV2::Integration")
    assert integration["Properties"]["RequestParameters"] == {
        "overwrite:header.X-Public-Host": "$context.domainName",
        "overwrite:header.X-Public-Proto": "https",
        "overwrite:header.X-Api-Request-Id": "$context.requestId",
        # Only the IAM API (iam_gateway.py) may write the caller header: dropped here, IAM sign-in or not.
        f"remove:header.{CALLER_HEADER}": "",
    }


def _sdk_call(resource: dict, phase: str, resolve) -> dict:
    """The JSON of an AwsCustomResource call, with intrinsics rendered by `resolve`."""
    parts = resource["Properties"][phase]["Fn::Join"][1]
    return json.loads("".join(part if isinstance(part, str) else resolve(part) for part in parts))


def test_artifact_bucket_allows_exactly_this_apis_origin_to_read(gateway_template: Template) -> None:
    ((rule_id, rule),) = resources(gateway_template, "Custom::AWS").items()
    api_id, _ = only(gateway_template, "AWS::ApiGatewayV2::Api")

    def resolve(part: dict) -> str:
        if part == {"Ref": api_id}:
            return "abc123"
        if part == {"Ref": "AWS::Region"}:
            return "eu-west-1"
        if part == {"Ref": "AWS::URLSuffix"}:
            return "amazonaws.com"
        if "Fn::GetStackOutput" in part:
            assert "StorageArtifacts" in part["Fn::GetStackOutput"]["OutputName"]  # the artifact bucket
            return "artifact-bucket"
        raise AssertionError(part)

    create = _sdk_call(rule, "Create", resolve)
    assert create["action"] == "PutBucketCors" and create["parameters"]["Bucket"] == "artifact-bucket"
    assert create["parameters"]["CORSConfiguration"]["CORSRules"] == artifact_cors_rules(
        ["https://abc123.execute-api.eu-west-1.amazonaws.com"]
    )
    assert _sdk_call(rule, "Update", resolve) == create
    assert _sdk_call(rule, "Delete", resolve) == {
        "action": "DeleteBucketCors",
        "service": "S3",
        "parameters": {"Bucket": "artifact-bucket"},
    }
    # The origin is the tracking URL's scheme and host: the API's endpoint.
    endpoint = gateway_template["Outputs"][names.OUTPUT_TRACKING_URL]["Value"]
    assert endpoint == {"Fn::GetAtt": [api_id, "ApiEndpoint"]}

    # The function may set this bucket's CORS rule and nothing else.
    (policy,) = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for p in resources(gateway_template, "AWS::IAM::Policy").values()
        if "CustomResourcePolicy" in json.dumps(p) or rule_id in json.dumps(p)
    ]
    assert [(s["Action"], s["Effect"]) for s in policy] == [("s3:PutBucketCORS", "Allow")]
    assert "StorageArtifacts" in json.dumps(policy[0]["Resource"])
    assert all(
        "ManagedPolicyArns" not in role["Properties"] for role in resources(gateway_template, "AWS::IAM::Role").values()
    )
