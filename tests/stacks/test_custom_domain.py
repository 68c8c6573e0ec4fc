"""Custom domain: ACM certificate, API custom domain and alias, HTTPS from the VPC link to the ALB.

The same stacks without a domain keep the execute-api URL and the HTTP listener
(the default templates are also pinned by the snapshots).
"""

import json
from typing import Any

import pytest

from stacks import names
from stacks.components.tracking_service import IAM_HTTPS_PORT
from stacks.iam_callers import CALLER_HEADER
from tests.stacks.helpers import (
    DOMAIN,
    DOMAIN_CONTEXT,
    HOSTED_ZONE_ID,
    Template,
    egress_rules,
    ingress_rules,
    only,
    props,
    ref_id,
    resources,
    service_task_definition,
)
from tests.synth import build_app, synth_templates

DOMAIN_URL = f"https://{DOMAIN}"


@pytest.fixture(scope="module")
def domain_templates() -> dict[str, Template]:
    return synth_templates(**DOMAIN_CONTEXT)


@pytest.fixture(scope="module")
def vpc(domain_templates: dict[str, Template]) -> Template:
    return domain_templates[names.VPC_STACK]


@pytest.fixture(scope="module")
def gateway(domain_templates: dict[str, Template]) -> Template:
    return domain_templates[names.GATEWAY_STACK]


def _output_name(value: dict[str, Any]) -> str:
    return value["Fn::GetStackOutput"]["OutputName"]


def _environment(template: Template, container: str) -> dict[str, Any]:
    definitions = service_task_definition(template)["ContainerDefinitions"]
    (found,) = [c for c in definitions if c["Name"] == container]
    return {variable["Name"]: variable["Value"] for variable in found.get("Environment", [])}


# --- with a domain: MLflowVpcStack -------------------------------------------


def test_certificate_is_for_the_domain_and_validated_through_dns_in_the_zone(vpc: Template) -> None:
    certificate = props(vpc, "AWS::CertificateManager::Certificate")
    assert certificate["DomainName"] == DOMAIN
    assert "SubjectAlternativeNames" not in certificate
    assert certificate["ValidationMethod"] == "DNS"
    assert certificate["DomainValidationOptions"] == [{"DomainName": DOMAIN, "HostedZoneId": HOSTED_ZONE_ID}]


def test_alb_listens_with_https_only_on_the_certificate_with_a_modern_policy(vpc: Template) -> None:
    certificate_id, _ = only(vpc, "AWS::CertificateManager::Certificate")
    listener = props(vpc, "AWS::ElasticLoadBalancingV2::Listener")  # the only one: no HTTP listener
    assert (listener["Port"], listener["Protocol"]) == (443, "HTTPS")
    assert listener["Certificates"] == [{"CertificateArn": {"Ref": certificate_id}}]
    # TLS 1.3 and 1.2, forward-secret AES-GCM ciphers only.
    assert listener["SslPolicy"] == "ELBSecurityPolicy-TLS13-1-2-Res-PQ-2025-09"
    # Behind the ALB nothing changes: plain HTTP to nginx inside the VPC, same health check.
    group = props(vpc, "AWS::ElasticLoadBalancingV2::TargetGroup")
    assert (group["Port"], group["Protocol"], group["HealthCheckPath"]) == (names.NGINX_PORT, "HTTP", "/elb-status")


def test_mlflow_is_told_its_public_domain(vpc: Template) -> None:
    assert _environment(vpc, "mlflow")["MLFLOW_PUBLIC_DOMAIN"] == DOMAIN
    assert "MLFLOW_PUBLIC_DOMAIN" not in _environment(vpc, "nginx")


def test_alb_still_admits_nothing_in_its_own_stack(vpc: Template) -> None:
    alb_group = ref_id(props(vpc, "AWS::ElasticLoadBalancingV2::LoadBalancer")["SecurityGroups"][0])
    assert [r for r in ingress_rules(vpc) if ref_id(r.get("GroupId", {"Ref": ""})) == alb_group] == []


# --- with a domain: HttpGatewayStack -----------------------------------------


def test_api_custom_domain_uses_the_shared_certificate(gateway: Template) -> None:
    domain = props(gateway, "AWS::ApiGatewayV2::DomainName")
    assert domain["DomainName"] == DOMAIN
    (configuration,) = domain["DomainNameConfigurations"]
    assert "DomainCertificate" in _output_name(configuration["CertificateArn"])
    assert configuration["EndpointType"] == "REGIONAL"
    assert configuration["SecurityPolicy"] == "TLS_1_2"


def test_api_mapping_serves_the_default_stage_at_the_root(gateway: Template) -> None:
    api_id, _ = only(gateway, "AWS::ApiGatewayV2::Api")
    domain_id, _ = only(gateway, "AWS::ApiGatewayV2::DomainName")
    mapping = props(gateway, "AWS::ApiGatewayV2::ApiMapping")
    assert mapping["ApiId"] == {"Ref": api_id}
    assert mapping["DomainName"] == {"Ref": domain_id}
    assert mapping["Stage"] == props(gateway, "AWS::ApiGatewayV2::Stage")["StageName"] == "$default"
    assert "ApiMappingKey" not in mapping  # no base path: the tracking URI is the bare domain


def test_alias_record_points_the_domain_at_the_api(gateway: Template) -> None:
    domain_id, _ = only(gateway, "AWS::ApiGatewayV2::DomainName")
    record = props(gateway, "AWS::Route53::RecordSet")  # the only record: the API is IPv4-only, no AAAA
    assert (record["Name"], record["Type"], record["HostedZoneId"]) == (f"{DOMAIN}.", "A", HOSTED_ZONE_ID)
    assert record["AliasTarget"] == {
        "DNSName": {"Fn::GetAtt": [domain_id, "RegionalDomainName"]},
        "HostedZoneId": {"Fn::GetAtt": [domain_id, "RegionalHostedZoneId"]},
    }
    assert props(gateway, "AWS::ApiGatewayV2::Api").get("IpAddressType", "ipv4") == "ipv4"


def test_execute_api_endpoint_is_off_so_the_domain_cannot_be_bypassed(gateway: Template) -> None:
    assert props(gateway, "AWS::ApiGatewayV2::Api")["DisableExecuteApiEndpoint"] is True


def test_integration_uses_tls_and_verifies_the_alb_server_name(gateway: Template) -> None:
    integration = props(gateway, "AWS::ApiGatewayV2::Integration")
    assert integration["TlsConfig"] == {"ServerNameToVerify": DOMAIN}
    assert "LoadBalancerHttps" in _output_name(integration["IntegrationUri"])
    assert integration["ConnectionType"] == "VPC_LINK"


def test_vpc_link_reaches_the_alb_on_443_only(gateway: Template) -> None:
    link_group, _ = only(gateway, "AWS::EC2::SecurityGroup")
    egress = [r for r in egress_rules(gateway) if r.get("CidrIp") != "255.255.255.255/32"]
    assert [(r["FromPort"], r["ToPort"]) for r in egress] == [(443, 443)]
    assert "LoadBalancerSecurityGroup" in _output_name(egress[0]["DestinationSecurityGroupId"])
    (ingress,) = ingress_rules(gateway)
    assert "LoadBalancerSecurityGroup" in _output_name(ingress["GroupId"])
    assert ref_id(ingress["SourceSecurityGroupId"]) == link_group
    assert (ingress["FromPort"], ingress["ToPort"]) == (443, 443)


def test_tracking_url_output_and_parameter_are_the_domain(gateway: Template) -> None:
    assert gateway["Outputs"][names.OUTPUT_TRACKING_URL]["Value"] == DOMAIN_URL
    parameter = props(gateway, "AWS::SSM::Parameter")
    assert (parameter["Name"], parameter["Value"]) == (names.SSM_TRACKING_URL, DOMAIN_URL)


# --- without a domain: as before ---------------------------------------------


def test_without_a_domain_there_is_no_certificate_domain_or_record(templates: dict[str, Template]) -> None:
    for template in templates.values():
        for kind in (
            "AWS::CertificateManager::Certificate",
            "AWS::ApiGatewayV2::DomainName",
            "AWS::ApiGatewayV2::ApiMapping",
            "AWS::Route53::RecordSet",
        ):
            assert not resources(template, kind), kind


def test_without_a_domain_the_alb_hop_is_http_and_the_api_url_is_execute_api(
    vpc_template: Template, gateway_template: Template
) -> None:
    listener = props(vpc_template, "AWS::ElasticLoadBalancingV2::Listener")
    assert (listener["Port"], listener["Protocol"]) == (80, "HTTP")
    assert "Certificates" not in listener and "SslPolicy" not in listener
    assert "MLFLOW_PUBLIC_DOMAIN" not in _environment(vpc_template, "mlflow")
    integration = props(gateway_template, "AWS::ApiGatewayV2::Integration")
    assert "TlsConfig" not in integration
    assert "LoadBalancerHttp" in _output_name(integration["IntegrationUri"])
    assert "DisableExecuteApiEndpoint" not in props(gateway_template, "AWS::ApiGatewayV2::Api")
    api_id, _ = only(gateway_template, "AWS::ApiGatewayV2::Api")
    assert gateway_template["Outputs"][names.OUTPUT_TRACKING_URL]["Value"] == {"Fn::GetAtt": [api_id, "ApiEndpoint"]}


# --- what code inside the VPC needs to call the ALB directly -----------------


def test_tracking_service_says_how_to_reach_the_alb() -> None:
    _, plain = build_app()
    assert (plain.vpc.tracking.listener_scheme, plain.vpc.tracking.listener_port) == ("http", 80)
    assert plain.vpc.tracking.server_name is None
    assert plain.vpc.certificate is None

    _, with_domain = build_app(**DOMAIN_CONTEXT)
    tracking = with_domain.vpc.tracking
    assert (tracking.listener_scheme, tracking.listener_port, tracking.server_name) == ("https", 443, DOMAIN)
    assert with_domain.vpc.load_balancer_port == 443
    assert with_domain.vpc.certificate is not None
    assert with_domain.gateway.tracking_url == DOMAIN_URL


# --- with a domain and accounts mode -------------------------------------------


@pytest.fixture(scope="module")
def domain_accounts() -> dict[str, Template]:
    """The variant cdk-nag and cfn-lint also synthesize (same overrides, same cache)."""
    return synth_templates(**DOMAIN_CONTEXT, auth_mode="accounts", user_profiles="alice,bob")


def test_artifact_cors_allows_the_domain_origin_only(domain_accounts: dict[str, Template]) -> None:
    """The UI is served from the domain (the execute-api URL is off): presigned fetches come from there."""
    (rule,) = resources(domain_accounts[names.GATEWAY_STACK], "Custom::AWS").values()
    create = rule["Properties"]["Create"]
    text = create if isinstance(create, str) else "".join(p for p in create["Fn::Join"][1] if isinstance(p, str))
    assert f'"AllowedOrigins":["{DOMAIN_URL}"]' in text
    assert "execute-api" not in text
    integrations = resources(domain_accounts[names.GATEWAY_STACK], "AWS::ApiGatewayV2::Integration")
    (integration,) = [i["Properties"] for key, i in integrations.items() if key.startswith("GatewayApi")]
    assert integration["RequestParameters"] == {
        "overwrite:header.X-Public-Host": "$context.domainName",
        "overwrite:header.X-Public-Proto": "https",
        "overwrite:header.X-Api-Request-Id": "$context.requestId",
        f"remove:header.{CALLER_HEADER}": "",
    }


def test_iam_api_keeps_its_execute_api_endpoint_and_verifies_the_listeners_certificate(
    domain_accounts: dict[str, Template],
) -> None:
    """Signed clients sign for the host they call: the IAM API is not on the domain, and reaches HTTPS 8443."""
    gateway, vpc = domain_accounts[names.GATEWAY_STACK], domain_accounts[names.VPC_STACK]
    apis = {
        a["Properties"]["Name"]: (key, a["Properties"])
        for key, a in resources(gateway, "AWS::ApiGatewayV2::Api").items()
    }
    iam_id, iam_api = apis["mlflow-iam"]
    assert "DisableExecuteApiEndpoint" not in iam_api and apis["mlflow"][1]["DisableExecuteApiEndpoint"] is True
    assert gateway["Outputs"][names.OUTPUT_IAM_TRACKING_URL]["Value"] == {"Fn::GetAtt": [iam_id, "ApiEndpoint"]}
    (mapping,) = [m["Properties"] for m in resources(gateway, "AWS::ApiGatewayV2::ApiMapping").values()]
    assert ref_id(mapping["ApiId"]) != iam_id
    (integration,) = [
        i["Properties"]
        for i in resources(gateway, "AWS::ApiGatewayV2::Integration").values()
        if i["Properties"]["ApiId"] == {"Ref": iam_id}
    ]
    assert integration["TlsConfig"] == {"ServerNameToVerify": DOMAIN}
    listeners = {
        r["Properties"]["Port"]: r["Properties"]
        for r in resources(vpc, "AWS::ElasticLoadBalancingV2::Listener").values()
    }
    assert sorted(listeners) == [443, IAM_HTTPS_PORT]
    assert listeners[IAM_HTTPS_PORT]["Protocol"] == "HTTPS"
    assert listeners[IAM_HTTPS_PORT]["Certificates"] == listeners[443]["Certificates"]
    assert listeners[IAM_HTTPS_PORT]["SslPolicy"] == listeners[443]["SslPolicy"]


def test_account_provisioner_reaches_the_https_listener_by_its_certificate_name(
    domain_accounts: dict[str, Template],
) -> None:
    studio = domain_accounts[names.STUDIO_STACK]
    (function,) = [
        f["Properties"]
        for f in resources(studio, "AWS::Lambda::Function").values()
        if "ADMIN_SECRET_ARN" in f["Properties"].get("Environment", {}).get("Variables", {})
    ]
    environment = function["Environment"]["Variables"]
    assert environment["MLFLOW_URL"]["Fn::Join"][1][0] == "https://"
    assert "DNSName" in _output_name(environment["MLFLOW_URL"]["Fn::Join"][1][1])
    # The certificate names the domain, not the ALB: verify (and send as SNI) that name.
    assert environment["MLFLOW_TLS_SERVER_NAME"] == DOMAIN
    (group,) = function["VpcConfig"]["SecurityGroupIds"]
    alb_ingress = [r for r in ingress_rules(studio) if "LoadBalancerSecurityGroup" in json.dumps(r["GroupId"])]
    assert [(ref_id(r["SourceSecurityGroupId"]), r["FromPort"], r["ToPort"]) for r in alb_ingress] == [
        (ref_id(group), 443, 443)
    ]
