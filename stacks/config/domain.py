"""An optional custom domain for the tracking URL, in a Route 53 zone."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import StringConstraints, field_validator

from stacks.config.base import Invalid, Section, empty_is_none, is_dns_name, setting

_CERTIFICATE_NAME_MAX = 64  # ACM: the certificate's first (and here only) name, in octets
DOMAIN_KEYS = ("domain_name", "hosted_zone_id", "hosted_zone_name")


@dataclass(frozen=True)
class CustomDomainSettings:
    """domain_name with the Route 53 zone that holds it (validated together by ProjectConfig)."""

    name: str
    zone_id: str
    zone_name: str

    @property
    def url(self) -> str:
        return f"https://{self.name}"


class Domain(Section):
    domain_name: str | None = setting(
        None,
        "empty, or a DNS name of at most 64 characters: hosted_zone_name or a name under it",
        "custom domain of the tracking URL (https://<domain_name>); needs hosted_zone_id and hosted_zone_name",
    )
    hosted_zone_id: Annotated[str, StringConstraints(pattern=r"^Z[A-Z0-9]{1,31}$")] | None = setting(
        None,
        "empty, or Z and 1-31 uppercase letters or digits",
        "Route 53 public hosted zone holding domain_name",
        problem="is not a Route 53 hosted zone id",
    )
    hosted_zone_name: str | None = setting(
        None, "empty, or a DNS name", "name of the hosted zone hosted_zone_id (imported as is: no lookup)"
    )

    @field_validator(*DOMAIN_KEYS, mode="before")
    @classmethod
    def _empty(cls, value: Any) -> Any:
        return empty_is_none(value)

    @field_validator("domain_name", "hosted_zone_name", mode="before")
    @classmethod
    def _dns_name_form(cls, value: Any) -> Any:
        """DNS names are case-insensitive and may be written fully qualified: compare them in one form."""
        if isinstance(value, str):
            return value.strip().rstrip(".").lower()
        return value

    @field_validator("domain_name", "hosted_zone_name")
    @classmethod
    def _check_dns_name(cls, value: str | None, info: Any) -> str | None:
        if value is None:
            return value
        if not is_dns_name(value):
            raise Invalid("is not a DNS name")
        if info.field_name == "domain_name" and len(value) > _CERTIFICATE_NAME_MAX:
            raise Invalid(f"is longer than {_CERTIFICATE_NAME_MAX} characters, the most an ACM certificate's name has")
        return value

    @property
    def custom_domain(self) -> CustomDomainSettings | None:
        """The domain and its zone when domain_name is set (ACM certificate, API custom domain, HTTPS to the ALB)."""
        if self.domain_name is None or self.hosted_zone_id is None or self.hosted_zone_name is None:
            return None
        return CustomDomainSettings(self.domain_name, self.hosted_zone_id, self.hosted_zone_name)
