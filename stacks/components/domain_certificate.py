"""The custom domain's TLS certificate, shared by the internal ALB and the API's custom domain."""

from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_route53 as route53
from constructs import Construct


def import_hosted_zone(scope: Construct, construct_id: str, *, zone_id: str, zone_name: str) -> route53.IHostedZone:
    """The zone by id and name: no context lookup, so synth stays offline and needs no credentials."""
    return route53.HostedZone.from_hosted_zone_attributes(
        scope, construct_id, hosted_zone_id=zone_id, zone_name=zone_name
    )


class DomainCertificate(Construct):
    """An ACM certificate for exactly ``domain_name``, validated through a DNS record in its zone.

    One certificate serves both TLS ends the domain needs: the API Gateway
    custom domain (what clients see) and the internal ALB's HTTPS listener,
    whose name the VPC link integration verifies. Created once (in the VPC
    stack, deployed first) and passed to the gateway stack: two certificates
    for one name would share, and fight over, one validation record.
    """

    def __init__(self, scope: Construct, construct_id: str, *, domain_name: str, zone_id: str, zone_name: str) -> None:
        super().__init__(scope, construct_id)
        self.domain_name = domain_name
        self.hosted_zone = import_hosted_zone(self, "Zone", zone_id=zone_id, zone_name=zone_name)
        self.certificate = acm.Certificate(
            self,
            "Certificate",
            domain_name=domain_name,
            certificate_name=f"mlflow {domain_name}",
            # CloudFormation writes the validation CNAME into the zone and waits for ACM to issue.
            validation=acm.CertificateValidation.from_dns(self.hosted_zone),
        )
