"""The tracking URL on the team's own name: API Gateway custom domain, API mapping, DNS alias."""

from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_route53 as route53
from aws_cdk import aws_route53_targets as targets
from constructs import Construct

from stacks.components.domain_certificate import import_hosted_zone


class CustomDomain(Construct):
    """``https://<domain_name>`` serves the HTTP API's ``$default`` stage at its root.

    A regional custom domain (TLS 1.2 or later) with the certificate from the
    VPC stack, an API mapping without a path (so the tracking URI has none) and
    an alias A record in the zone. The API answers over IPv4 only (HttpApi's
    default), so there is no AAAA record: one would come with a dual-stack API
    and domain.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        domain_name: str,
        zone_id: str,
        zone_name: str,
        certificate: acm.ICertificate,
        api: apigw.IHttpApi,
        stage: apigw.IHttpStage,
    ) -> None:
        super().__init__(scope, construct_id)
        self.domain = apigw.DomainName(
            self,
            "DomainName",
            domain_name=domain_name,
            certificate=certificate,
            endpoint_type=apigw.EndpointType.REGIONAL,
            security_policy=apigw.SecurityPolicy.TLS_1_2,
        )
        self.mapping = apigw.ApiMapping(self, "ApiMapping", api=api, domain_name=self.domain, stage=stage)
        zone = import_hosted_zone(self, "Zone", zone_id=zone_id, zone_name=zone_name)
        self.record = route53.ARecord(
            self,
            "AliasRecord",
            zone=zone,
            record_name=f"{domain_name}.",
            target=route53.RecordTarget.from_alias(
                targets.ApiGatewayv2DomainProperties(
                    self.domain.regional_domain_name, self.domain.regional_hosted_zone_id
                )
            ),
            comment="MLflow tracking URL (API Gateway custom domain)",
        )
        self.url = f"https://{domain_name}"
