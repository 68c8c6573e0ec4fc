"""What every section shares: how a setting is declared, context coercion, one-line errors."""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class ConfigError(ValueError):
    """One invalid setting: the message names the key, the value and what is allowed."""


class Invalid(ValueError):
    """Raised inside validators; carries what the one-line message needs."""

    def __init__(self, problem: str, *, key: str | None = None, value: Any = None, allowed: str | None = None) -> None:
        super().__init__(problem)
        self.problem, self.key, self.value, self.allowed = problem, key, value, allowed


def setting(default: Any, allowed: str, purpose: str, *, problem: str | None = None, **constraints: Any) -> Any:
    """A field documented by what it allows and what it is for (docs/configuration.md mirrors both).

    ``problem`` words what is wrong when pydantic's own check (pattern, Literal) fails.
    """
    extra: dict[str, Any] = {"allowed": allowed, "purpose": purpose, **({"problem": problem} if problem else {})}
    return Field(default, json_schema_extra=extra, **constraints)


# One address: a local part, "@", a domain with a dot (SNS rejects anything else at deploy time).
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
EMAIL = re.compile(rf"[A-Za-z0-9.!#$%&'*+/=?^_`{{|}}~-]{{1,64}}@{_LABEL}(?:\.{_LABEL})+")
_DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# At most 180 characters: a profile's secret name (<name>/users/<profile>/login)
# must fit the 256 characters of an IAM tag value, where the lab finds it.
SECRET_NAME = re.compile(r"[A-Za-z0-9/_+=.@-]{1,180}")
_ARN_SUFFIX = re.compile(r"-.{6}\Z", re.DOTALL)  # what Secrets Manager appends to secret ARNs
CLIENT_ID = re.compile(r"[A-Za-z0-9._~+/=-]{1,128}")
# Cognito identity provider names: COGNITO (the pool's own users), Google, Facebook,
# LoginWithAmazon, SignInWithApple, or the name given to a SAML / OIDC provider (1-32 characters).
IDENTITY_PROVIDER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")


def is_secret_name(value: str) -> bool:
    """A Secrets Manager name that cannot be mistaken for an ARN's suffix."""
    return bool(SECRET_NAME.fullmatch(value)) and not _ARN_SUFFIX.search(value)


def is_dns_name(value: str) -> bool:
    """At least two labels of letters, digits and inner hyphens; not an IP address; 253 characters at most."""
    labels = value.split(".")
    return (
        len(value) <= 253
        and len(labels) >= 2
        and all(_DNS_LABEL.fullmatch(label) for label in labels)
        and not labels[-1].isdigit()
    )


def is_https_url(value: str) -> bool:
    """https://, a DNS name (no port, no credentials), any path."""
    scheme, _, rest = value.partition("://")
    host = rest.split("/", 1)[0]
    return scheme == "https" and is_dns_name(host.lower()) and not any(c.isspace() for c in value)


def empty_is_none(value: Any) -> Any:
    """cdk.json cannot hold null for a -c override: an empty string means "not set"."""
    if isinstance(value, str) and not value.strip():
        return None
    return value


def json_text(value: Any, blank: Any) -> Any:
    """`-c key='...'` gives JSON text where cdk.json gives the value itself: parse it (empty text is ``blank``)."""
    if not isinstance(value, str):
        return value
    if not value.strip():
        return blank
    try:
        return json.loads(value)
    except ValueError:
        raise Invalid("is not JSON") from None


def names_are_strings(value: Any) -> Any:
    """7 or true in a JSON list is a mistake, not a name: say so instead of coercing it."""
    if isinstance(value, list) and not all(isinstance(item, str) for item in value):
        raise Invalid("holds something that is not a name")
    return value


class Section(BaseModel):
    """A group of flat context keys; each field name is its key."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True, validate_default=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, value: Any, info: Any) -> Any:
        """JSON true/false is not a count or a size, though Python would treat it as 1/0."""
        annotation = cls.model_fields[info.field_name].annotation
        if isinstance(value, bool) and annotation in (int, float):
            raise Invalid("is not a whole number" if annotation is int else "is not a finite number")
        return value

    @field_validator("*", mode="before")
    @classmethod
    def _comma_lists(cls, value: Any, info: Any) -> Any:
        """`-c key=a,b` gives one string; a list setting splits it (cdk.json may hold a JSON list)."""
        annotation = cls.model_fields[info.field_name].annotation
        if isinstance(value, str) and getattr(annotation, "__args__", None) == (str,):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value
