"""The VPC: its address range, availability zones and NAT gateways."""

from __future__ import annotations

import ipaddress

from pydantic import field_validator

from stacks.config.base import Invalid, Section, setting


class Network(Section):
    vpc_cidr: str = setting(
        "10.40.0.0/16",
        "an IPv4 network with zero host bits and a /16 to /20 prefix",
        "VPC address range; 3 subnet tiers x up to 3 AZs must fit in it",
    )
    az_count: int = setting(2, "2 or 3", "availability zones; the ALB and Aurora need at least two", ge=2, le=3)
    nat_gateways: int = setting(
        1, "1 to az_count", "NAT gateways; private tasks need egress to pull images and reach AWS APIs", ge=1, le=3
    )

    @field_validator("vpc_cidr")
    @classmethod
    def _check_vpc_cidr(cls, value: str) -> str:
        try:
            net = ipaddress.IPv4Network(value)
            canonical = str(net) == value
        except ValueError:
            canonical = False
        if not canonical:
            raise Invalid(
                "is not an IPv4 network in CIDR form with zero host bits",
                allowed="a network such as 10.40.0.0/16 with a /16 to /20 prefix",
            )
        if not 16 <= net.prefixlen <= 20:
            raise Invalid(f"has a /{net.prefixlen} prefix")
        return value
