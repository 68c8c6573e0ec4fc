"""Typed, validated project settings read from CDK context.

Every setting has a default in cdk.json's "context" and can be overridden per
command, e.g. ``npx cdk deploy --all -c task_cpu=2048 -c task_memory_mib=8192``.
Values given with ``-c`` arrive as strings; pydantic coerces them to the
field's type, and each one is checked against what the AWS service accepts: a
mistake fails ``cdk synth`` with one clear sentence instead of a deploy that
rolls back half way.

A setting is declared with ``setting(default, allowed, purpose, ...)``:
``allowed`` is quoted in error messages and in the README's configuration
table, which a test keeps in step with the code.
"""

from __future__ import annotations

import difflib
import functools
import ipaddress
import json
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_logs as logs
from constructs import Construct
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticUndefined

from stacks import names, task_sizing
from stacks.federation import (
    CLIENT_SECRET_FIELD,
    FEDERATION_TYPES,
    GOOGLE_PROVIDER_NAME,
    RESERVED_PROVIDER_NAMES,
    FederatedProvider,
)

CDK_JSON = Path(__file__).resolve().parent.parent / "cdk.json"

# Fargate: memory values (MiB) accepted with each CPU value.
_FARGATE_MEMORY: dict[int, range | tuple[int, ...]] = {
    256: (512, 1024, 2048),
    512: range(1024, 4096 + 1, 1024),
    1024: range(2048, 8192 + 1, 1024),
    2048: range(4096, 16384 + 1, 1024),
    4096: range(8192, 30720 + 1, 1024),
    8192: range(16384, 61440 + 1, 4096),
    16384: range(32768, 122880 + 1, 8192),
}
# CloudWatch Logs retention periods (days) and their aws_logs.RetentionDays names.
_LOG_RETENTION: dict[int, str] = {
    1: "ONE_DAY",
    3: "THREE_DAYS",
    5: "FIVE_DAYS",
    7: "ONE_WEEK",
    14: "TWO_WEEKS",
    30: "ONE_MONTH",
    60: "TWO_MONTHS",
    90: "THREE_MONTHS",
    120: "FOUR_MONTHS",
    150: "FIVE_MONTHS",
    180: "SIX_MONTHS",
    365: "ONE_YEAR",
    400: "THIRTEEN_MONTHS",
    545: "EIGHTEEN_MONTHS",
    731: "TWO_YEARS",
    1096: "THREE_YEARS",
    1827: "FIVE_YEARS",
    2192: "SIX_YEARS",
    2557: "SEVEN_YEARS",
    2922: "EIGHT_YEARS",
    3288: "NINE_YEARS",
    3653: "TEN_YEARS",
}
# At most 180 characters: a profile's secret name (<name>/users/<profile>/login)
# must fit the 256 characters of an IAM tag value, where the lab finds it.
_SECRET_NAME = re.compile(r"[A-Za-z0-9/_+=.@-]{1,180}")
_ARN_SUFFIX = re.compile(r"-.{6}\Z", re.DOTALL)  # what Secrets Manager appends to secret ARNs
_DOMAIN_ID = re.compile(r"d-[a-z0-9]{12}")
_PROFILE_NAME = re.compile(r"[a-zA-Z0-9](?:-*[a-zA-Z0-9]){0,62}")
# Each profile adds about ten resources (two roles and their policies, a secret,
# the profile, the account); 20 keeps the Studio stack far below CloudFormation's
# 500-resource limit and the deploy short.
MAX_USER_PROFILES = 20
AUTH_MODES = ("shared", "accounts", "sso")
OIDC_PROVIDERS = ("cognito", "external")
# MLflow's auth app: permissions a user has on what nobody granted them explicitly.
PERMISSIONS = ("READ", "EDIT", "MANAGE", "NO_PERMISSIONS")
# Keys that were renamed: a clear message instead of "unknown key".
_RENAMED = {
    "user_profile_name": (
        "user_profiles",
        "a list of Studio user profile names, e.g. -c user_profiles=alice,bob",
    ),
}

# One address: a local part, "@", a domain with a dot (SNS rejects anything else at deploy time).
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_EMAIL = re.compile(rf"[A-Za-z0-9.!#$%&'*+/=?^_`{{|}}~-]{{1,64}}@{_LABEL}(?:\.{_LABEL})+")
_DNS_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_HOSTED_ZONE_ID = re.compile(r"Z[A-Z0-9]{1,31}")
_CERTIFICATE_NAME_MAX = 64  # ACM: the certificate's first (and here only) name, in octets
_DOMAIN_KEYS = ("domain_name", "hosted_zone_id", "hosted_zone_name")
# sso mode: what only an external issuer uses, and what only the Cognito pool uses.
_EXTERNAL_KEYS = ("oidc_discovery_url", "oidc_client_secret_name")
_COGNITO_KEYS = ("cognito_identity_providers", "cognito_domain_prefix")
# cognito_federation: the keys each provider type takes besides name and type (required, optional).
_FEDERATION_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "google": (("client_id", "client_secret_name"), ()),
    "oidc": (("issuer_url", "client_id", "client_secret_name"), ("scopes",)),
    "saml": (("metadata_url",), ()),
}
# An OAuth scope token (RFC 6749): printable ASCII without space, double quote or backslash.
_SCOPE = re.compile(r"[!#-\[\]-~]{1,256}")
_DISCOVERY_PATH = "/.well-known/openid-configuration"
# A group name as an identity provider puts it in a token: no commas (lists), no control characters.
_GROUP_NAME = re.compile(r"[^,\x00-\x1f\x7f]{1,128}")
# Cognito identity provider names: COGNITO (the pool's own users), Google, Facebook,
# LoginWithAmazon, SignInWithApple, or the name given to a SAML / OIDC provider (1-32 characters).
_CLIENT_ID = re.compile(r"[A-Za-z0-9._~+/=-]{1,128}")
_IDENTITY_PROVIDER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")
# Cognito hosted UI prefixes: lowercase letters, digits, inner hyphens; never these words.
_DOMAIN_PREFIX = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_RESERVED_PREFIX_WORDS = ("aws", "amazon", "cognito")


@dataclass(frozen=True)
class CustomDomainSettings:
    """domain_name with the Route 53 zone that holds it (validated together by ProjectConfig)."""

    name: str
    zone_id: str
    zone_name: str

    @property
    def url(self) -> str:
        return f"https://{self.name}"


class ConfigError(ValueError):
    """One invalid setting: the message names the key, the value and what is allowed."""


class _Invalid(ValueError):
    """Raised inside validators; carries what the one-line message needs."""

    def __init__(self, problem: str, *, key: str | None = None, value: Any = None, allowed: str | None = None) -> None:
        super().__init__(problem)
        self.problem, self.key, self.value, self.allowed = problem, key, value, allowed


def _describe(values: range | tuple[int, ...]) -> str:
    if isinstance(values, range):
        return f"{values[0]}-{values[-1]} in steps of {values.step}"
    return ", ".join(map(str, values))


def _smallest_task(cpu: int, memory_mib: int) -> str:
    """The smallest Fargate size with at least ``memory_mib``, keeping ``cpu`` if it can."""
    for task_cpu in [cpu, *(c for c in _FARGATE_MEMORY if c > cpu)]:
        fitting = [size for size in _FARGATE_MEMORY[task_cpu] if size >= memory_mib]
        if fitting:
            prefix = "" if task_cpu == cpu else f"task_cpu={task_cpu} and "
            return f"{prefix}task_memory_mib={fitting[0]}"
    return "no Fargate size"


def _message(key: str, value: Any, problem: str, allowed: str) -> str:
    shown = repr(value)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    return f"Invalid configuration: {key}={shown} {problem}; allowed: {allowed}."


def setting(default: Any, allowed: str, purpose: str, **constraints: Any) -> Any:
    """A field documented by what it allows and what it is for (the README table mirrors both)."""
    return Field(default, json_schema_extra={"allowed": allowed, "purpose": purpose}, **constraints)


# What pydantic's error types mean, in the words of our messages.
_PROBLEMS = {
    "int_parsing": "is not a whole number",
    "int_from_float": "is not a whole number",
    "int_type": "is not a whole number",
    "float_parsing": "is not a finite number",
    "float_type": "is not a finite number",
    "finite_number": "is not a finite number",
    "string_type": "is not a string",
    "list_type": "is not a list",
    "literal_error": "is not one of the allowed values",
}


class ModelDeployment(BaseModel):
    """One registered model that deploys to its own SageMaker endpoint when `alias` moves."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    model_name: str = Field(min_length=1, max_length=256)
    alias: str = Field("champion", pattern=r"^[A-Za-z0-9_-]{1,255}$")
    instance_type: str = Field(min_length=1)
    instance_count: int = Field(1, ge=1, le=10)


class ProjectConfig(BaseModel):
    """Deployment settings; the context key of each one is the field name."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True, validate_default=True)

    vpc_cidr: str = setting(
        "10.40.0.0/16",
        "an IPv4 network with zero host bits and a /16 to /20 prefix",
        "VPC address range; 3 subnet tiers x up to 3 AZs must fit in it",
    )
    az_count: int = setting(2, "2 or 3", "availability zones; the ALB and Aurora need at least two", ge=2, le=3)
    nat_gateways: int = setting(
        1, "1 to az_count", "NAT gateways; private tasks need egress to pull images and reach AWS APIs", ge=1, le=3
    )
    task_cpu: int = setting(1024, _describe(tuple(_FARGATE_MEMORY)), "Fargate task CPU units")
    # Must hold mlflow_workers with headroom: the measured figures are in stacks/task_sizing.py.
    task_memory_mib: int = setting(
        2048,
        "a size Fargate pairs with task_cpu, enough for mlflow_workers",
        "Fargate task memory (MiB), shared by nginx and MLflow",
    )
    desired_task_count: int = setting(
        2, "1-20, from min_task_count to max_task_count", "tasks running after a deploy", ge=1, le=20
    )
    min_task_count: int = setting(2, "1-20, at most max_task_count", "autoscaling floor", ge=1, le=20)
    max_task_count: int = setting(4, "1-20, at least min_task_count", "autoscaling ceiling", ge=1, le=20)
    cpu_scaling_target_percent: int = setting(60, "10-90", "average CPU the service scales to hold", ge=10, le=90)
    mlflow_workers: int = setting(
        2, "1-16, as many as task_memory_mib holds", "MLflow server worker processes per task", ge=1, le=16
    )
    aurora_min_acu: float = setting(
        0.0, "0-256 in steps of 0.5", "Aurora capacity floor; 0 pauses the cluster when idle", allow_inf_nan=False
    )
    aurora_max_acu: float = setting(
        4.0, "1-256 in steps of 0.5, at least aurora_min_acu", "Aurora capacity ceiling", allow_inf_nan=False
    )
    aurora_auto_pause_minutes: int = setting(
        60, "5-1440", "idle minutes before Aurora pauses (only when aurora_min_acu is 0)", ge=5, le=1440
    )
    log_retention_days: int = setting(
        30, ", ".join(map(str, _LOG_RETENTION)), "CloudWatch Logs retention of every log group"
    )
    removal_policy: str = setting(
        "retain",
        "retain, destroy",
        "retain keeps bucket, database (deletion protection, final snapshot) "
        "and secrets when the stack is deleted; destroy is for dev",
    )
    # A week of point-in-time restore covers a mistake noticed after a weekend; Aurora
    # does not charge for backup storage up to the cluster's own size, which a week of
    # MLflow metadata stays within.
    backup_retention_days: int = setting(
        7, "1-35", "days of Aurora automated backups: how far back a point-in-time restore reaches", ge=1, le=35
    )
    artifact_version_retention_days: int = setting(
        90,
        "1-3650",
        "days S3 keeps an overwritten or deleted artifact's old version: how far back artifacts can be restored",
        ge=1,
        le=3650,
    )
    credentials_secret_name: str = setting(
        "mlflow-server-credentials",
        "1-180 of A-Z a-z 0-9 / _ + = . @ -, not ending in a hyphen and 6 characters",
        "Secrets Manager name of the MLflow credentials (shared mode: the one login; accounts mode: the "
        "admin); each profile's secret in accounts mode is <name>/users/<profile>/login",
    )
    auth_mode: str = setting(
        "shared",
        ", ".join(AUTH_MODES),
        "shared: one login checked by nginx; accounts: MLflow's own users and permissions, "
        "one MLflow user per Studio profile; sso: people sign in with an OIDC provider, code sends its tokens",
    )
    default_permission: str = setting(
        "READ",
        ", ".join(PERMISSIONS),
        "accounts and sso modes: what every user may do on experiments and models nobody granted them "
        "(creators get MANAGE on their own)",
    )
    oidc_provider: str = setting(
        "cognito",
        ", ".join(OIDC_PROVIDERS),
        "sso mode: cognito creates a Cognito user pool with hosted sign-in; external uses your OIDC issuer",
    )
    oidc_discovery_url: str | None = setting(
        None,
        f"empty, or an https URL ending in {_DISCOVERY_PATH} (required with oidc_provider=external)",
        "sso mode with an external issuer: its OpenID Connect discovery document",
    )
    oidc_client_secret_name: str | None = setting(
        None,
        "empty, or 1-180 of A-Z a-z 0-9 / _ + = . @ -, not ending in a hyphen and 6 characters "
        "(required with oidc_provider=external)",
        "sso mode with an external issuer: the secret you created holding the UI client's "
        "JSON fields client_id and client_secret",
    )
    oidc_admin_group: str = setting(
        "mlflow-admins",
        "1-128 characters without commas (no spaces with cognito)",
        "sso mode: members of this group are MLflow admins (created in the pool with cognito)",
    )
    oidc_allowed_group: str | None = setting(
        None,
        "empty, or a group name like oidc_admin_group",
        "sso mode: only members of this group may sign in (created in the pool with cognito); empty lets "
        "everybody the provider authenticates in",
    )
    oidc_machine_clients: list[str] = setting(
        [],
        "0-50 distinct OAuth client ids of 1-128 letters, digits and . _ ~ + / = -",
        "sso mode: clients whose client-credentials tokens act as MLflow users named by the client id "
        "(pipelines; with external also the Studio profiles' clients); Cognito's Studio clients are added by the stack",
    )
    cognito_identity_providers: list[str] = setting(
        ["COGNITO"],
        "1-10 distinct names (0 with cognito_federation): COGNITO (the pool's own users) and/or providers "
        "added to the pool by hand (Google, SignInWithApple, or the name of a SAML or OIDC provider), "
        "1-32 letters, digits, . _ -",
        "sso mode with cognito: where the hosted sign-in page sends people, besides cognito_federation's providers",
    )
    cognito_federation: list[FederatedProvider] = setting(
        [],
        "a JSON list of 0-10 providers, each {name, type} plus for google: client_id, client_secret_name "
        "(name Google); oidc: issuer_url (https), client_id, client_secret_name, optional scopes with openid; "
        "saml: metadata_url (https); names of 1-32 letters, digits, . _ - not in cognito_identity_providers",
        "sso mode with cognito: identity providers the stack adds to the pool and offers on the sign-in page; "
        f"a client secret is read from field {CLIENT_SECRET_FIELD} of the secret client_secret_name",
    )
    cognito_domain_prefix: str | None = setting(
        None,
        "empty, or 1-63 lowercase letters, digits and inner hyphens without aws, amazon or cognito",
        "sso mode with cognito: hosted sign-in at https://<prefix>.auth.<region>.amazoncognito.com; "
        "empty uses mlflow-<account id>",
    )
    sagemaker_domain_id: str | None = setting(
        None, "empty, or d- and 12 lowercase letters or digits", "existing Studio domain to use; empty creates one"
    )
    user_profiles: list[str] = setting(
        ["mlflow-user"],
        f"1-{MAX_USER_PROFILES} distinct names of 1-63 letters, digits and inner hyphens",
        "Studio user profiles to create, each with its own roles (and its own MLflow user in accounts mode)",
    )
    api_throttle_rate_limit: float = setting(
        100.0, "more than 0, at most 10000", "HTTP API steady-state requests per second", gt=0, le=10000
    )
    api_throttle_burst_limit: int = setting(200, "1-5000", "HTTP API burst size in requests", ge=1, le=5000)
    domain_name: str | None = setting(
        None,
        "empty, or a DNS name of at most 64 characters: hosted_zone_name or a name under it",
        "custom domain of the tracking URL (https://<domain_name>); needs hosted_zone_id and hosted_zone_name",
    )
    hosted_zone_id: str | None = setting(
        None, "empty, or Z and 1-31 uppercase letters or digits", "Route 53 public hosted zone holding domain_name"
    )
    hosted_zone_name: str | None = setting(
        None, "empty, or a DNS name", "name of the hosted zone hosted_zone_id (imported as is: no lookup)"
    )
    alarm_email: str | None = setting(
        None,
        "empty, or one email address",
        "address subscribed to the alarm topic (AWS emails a confirmation link first); empty subscribes nobody",
    )
    allowed_instance_types: list[str] = setting(
        ["ml.m5.large", "ml.m5.xlarge", "ml.c5.xlarge"],
        "one or more SageMaker training or endpoint instance types, e.g. ml.m5.large",
        "instance types Studio users may train on and deploy endpoints to (caps their cost)",
    )
    ai_gateway: bool = setting(
        False,
        "true or false",
        "MLflow's AI gateway: the server keeps LLM provider keys and calls providers for users; off unless true",
    )

    # --- model deployments (issue 21) ---
    model_deployments: list[ModelDeployment] = setting(
        [],
        "a list of {model_name, alias (default champion), instance_type, instance_count (1-10)}",
        "registered models that deploy to a SageMaker endpoint when their alias moves",
    )

    # --- coercion of context values ----------------------------------------

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, value: Any, info: Any) -> Any:
        """JSON true/false is not a count or a size, though Python would treat it as 1/0."""
        annotation = cls.model_fields[info.field_name].annotation
        if isinstance(value, bool) and annotation in (int, float):
            raise _Invalid("is not a whole number" if annotation is int else "is not a finite number")
        return value

    @field_validator("ai_gateway", mode="before")
    @classmethod
    def _true_or_false(cls, value: Any) -> Any:
        """JSON true/false, or the words `-c key=true|false` gives; not 1, "yes" or "on"."""
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        if not isinstance(value, bool):
            raise _Invalid("is not true or false")
        return value

    @field_validator("*", mode="before")
    @classmethod
    def _comma_lists(cls, value: Any, info: Any) -> Any:
        """`-c key=a,b` gives one string; a list setting splits it (cdk.json may hold a JSON list)."""
        annotation = cls.model_fields[info.field_name].annotation
        if isinstance(value, str) and getattr(annotation, "__args__", None) == (str,):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator(
        "sagemaker_domain_id",
        "alarm_email",
        "oidc_allowed_group",
        *_DOMAIN_KEYS,
        *_EXTERNAL_KEYS,
        "cognito_domain_prefix",
        mode="before",
    )
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        """cdk.json cannot hold null for a -c override: an empty string means "not set"."""
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("domain_name", "hosted_zone_name", mode="before")
    @classmethod
    def _dns_name_form(cls, value: Any) -> Any:
        """DNS names are case-insensitive and may be written fully qualified: compare them in one form."""
        if isinstance(value, str):
            return value.strip().rstrip(".").lower()
        return value

    # --- one rule per setting ----------------------------------------------

    @field_validator("vpc_cidr")
    @classmethod
    def _check_vpc_cidr(cls, value: str) -> str:
        try:
            net = ipaddress.IPv4Network(value)
            canonical = str(net) == value
        except ValueError:
            canonical = False
        if not canonical:
            raise _Invalid(
                "is not an IPv4 network in CIDR form with zero host bits",
                allowed="a network such as 10.40.0.0/16 with a /16 to /20 prefix",
            )
        if not 16 <= net.prefixlen <= 20:
            raise _Invalid(f"has a /{net.prefixlen} prefix")
        return value

    @field_validator("task_cpu")
    @classmethod
    def _check_task_cpu(cls, value: int) -> int:
        if value not in _FARGATE_MEMORY:
            raise _Invalid("is not a Fargate CPU value")
        return value

    @field_validator("aurora_min_acu", "aurora_max_acu")
    @classmethod
    def _check_acu(cls, value: float, info: Any) -> float:
        low = 0 if info.field_name == "aurora_min_acu" else 1
        if not (low <= value <= 256 and (value * 2).is_integer()):
            raise _Invalid("is not an allowed capacity")
        return value

    @field_validator("log_retention_days")
    @classmethod
    def _check_log_retention(cls, value: int) -> int:
        if value not in _LOG_RETENTION:
            raise _Invalid("is not a CloudWatch Logs retention period")
        return value

    @field_validator("removal_policy")
    @classmethod
    def _check_removal_policy(cls, value: str) -> str:
        if value not in ("retain", "destroy"):
            raise _Invalid("is not a removal policy")
        return value

    @field_validator("credentials_secret_name")
    @classmethod
    def _check_secret_name(cls, value: str) -> str:
        if not _SECRET_NAME.fullmatch(value) or _ARN_SUFFIX.search(value):
            raise _Invalid("is not a usable Secrets Manager name")
        return value

    @field_validator("sagemaker_domain_id")
    @classmethod
    def _check_domain_id(cls, value: str | None) -> str | None:
        if value is not None and not _DOMAIN_ID.fullmatch(value):
            raise _Invalid("is not a SageMaker domain id")
        return value

    @field_validator("allowed_instance_types")
    @classmethod
    def _check_instance_types(cls, value: list[str]) -> list[str]:
        if not value:
            raise _Invalid("is empty")
        known = sagemaker_instance_types()
        for name in value:
            if name not in known:
                close = difflib.get_close_matches(name, sorted(known), n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise _Invalid(f"has {name!r}, which is not a SageMaker training or endpoint instance type{hint}")
        if len(set(value)) != len(value):
            raise _Invalid("lists an instance type twice")
        return value

    @field_validator("auth_mode")
    @classmethod
    def _check_auth_mode(cls, value: str) -> str:
        if value not in AUTH_MODES:
            raise _Invalid("is not an authentication mode")
        return value

    @field_validator("oidc_provider")
    @classmethod
    def _check_oidc_provider(cls, value: str) -> str:
        if value not in OIDC_PROVIDERS:
            raise _Invalid("is not an OIDC provider choice")
        return value

    @field_validator("oidc_discovery_url")
    @classmethod
    def _check_discovery_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        scheme, _, rest = value.partition("://")
        host = rest.split("/", 1)[0]
        if scheme != "https" or not value.endswith(_DISCOVERY_PATH) or not _is_dns_name(host.lower()):
            raise _Invalid("is not an https discovery URL")
        return value

    @field_validator("oidc_client_secret_name")
    @classmethod
    def _check_client_secret_name(cls, value: str | None) -> str | None:
        if value is not None and (not _SECRET_NAME.fullmatch(value) or _ARN_SUFFIX.search(value)):
            raise _Invalid("is not a usable Secrets Manager name")
        return value

    @field_validator("oidc_admin_group", "oidc_allowed_group")
    @classmethod
    def _check_group(cls, value: str | None) -> str | None:
        if value is not None and not _GROUP_NAME.fullmatch(value):
            raise _Invalid("is not a group name")
        return value

    @field_validator("oidc_machine_clients")
    @classmethod
    def _check_machine_clients(cls, value: list[str]) -> list[str]:
        value = [client.strip() for client in value]
        if len(value) > 50:
            raise _Invalid(f"has {len(value)} clients")
        bad = next((client for client in value if not _CLIENT_ID.fullmatch(client)), None)
        if bad is not None:
            raise _Invalid(f"holds {bad!r}, which is not an OAuth client id")
        if len(set(value)) != len(value):
            raise _Invalid("names a client twice")
        return value

    @field_validator("cognito_identity_providers", "oidc_machine_clients", mode="before")
    @classmethod
    def _provider_names_are_strings(cls, value: Any) -> Any:
        if isinstance(value, list) and not all(isinstance(item, str) for item in value):
            raise _Invalid("holds something that is not a name")
        return value

    @field_validator("cognito_identity_providers")
    @classmethod
    def _check_identity_providers(cls, value: list[str]) -> list[str]:
        value = [name.strip() for name in value]
        if len(value) > 10:
            raise _Invalid(f"has {len(value)} providers")
        bad = next((name for name in value if not _IDENTITY_PROVIDER.fullmatch(name)), None)
        if bad is not None:
            raise _Invalid(f"holds {bad!r}, which is not a Cognito identity provider name")
        if len(set(value)) != len(value):
            raise _Invalid("names a provider twice")
        return value

    @field_validator("cognito_federation", mode="before")
    @classmethod
    def _check_federation(cls, value: Any) -> Any:
        """`-c cognito_federation='[...]'` arrives as JSON text; each item is checked for its type's keys."""
        if isinstance(value, str):
            if not value.strip():
                return []
            try:
                value = json.loads(value)
            except ValueError:
                raise _Invalid("is not JSON") from None
        if not isinstance(value, list):
            raise _Invalid("is not a list of provider definitions")
        if len(value) > 10:
            raise _Invalid(f"has {len(value)} providers")
        providers = [_federated_provider(item) for item in value]
        seen: set[str] = set()
        for provider in providers:
            if provider.name in seen:
                raise _Invalid(f"names provider {provider.name!r} twice")
            seen.add(provider.name)
        return providers

    @field_validator("cognito_domain_prefix")
    @classmethod
    def _check_domain_prefix(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not _DOMAIN_PREFIX.fullmatch(value):
            raise _Invalid("is not a Cognito domain prefix")
        reserved = next((word for word in _RESERVED_PREFIX_WORDS if word in value), None)
        if reserved is not None:
            raise _Invalid(f"contains {reserved!r}, which Cognito reserves")
        return value

    @field_validator("default_permission")
    @classmethod
    def _check_default_permission(cls, value: str) -> str:
        if value not in PERMISSIONS:
            raise _Invalid("is not an MLflow permission")
        return value

    @field_validator("user_profiles", mode="before")
    @classmethod
    def _profile_names_are_strings(cls, value: Any) -> Any:
        """7 or true in a JSON list is a mistake, not a name: say so instead of coercing it."""
        if isinstance(value, list) and not all(isinstance(item, str) for item in value):
            raise _Invalid("holds something that is not a name")
        return value

    @field_validator("user_profiles")
    @classmethod
    def _check_profiles(cls, value: list[str]) -> list[str]:
        value = [name.strip() for name in value]
        if not value:
            raise _Invalid("is empty")
        if len(value) > MAX_USER_PROFILES:
            raise _Invalid(f"has {len(value)} profiles")
        bad = next((name for name in value if not _PROFILE_NAME.fullmatch(name)), None)
        if bad is not None:
            raise _Invalid(f"holds {bad!r}, which is not a SageMaker user profile name")
        seen: set[str] = set()
        for name in value:
            # MLflow user names and secret names must not clash either.
            if name.lower() in seen:
                raise _Invalid(f"names {name!r} twice (ignoring case)")
            seen.add(name.lower())
        return value

    @field_validator("alarm_email")
    @classmethod
    def _check_alarm_email(cls, value: str | None) -> str | None:
        if value is not None and (len(value) > 254 or not _EMAIL.fullmatch(value)):
            raise _Invalid("is not an email address")
        return value

    @field_validator("domain_name", "hosted_zone_name")
    @classmethod
    def _check_dns_name(cls, value: str | None, info: Any) -> str | None:
        if value is None:
            return value
        if not _is_dns_name(value):
            raise _Invalid("is not a DNS name")
        if info.field_name == "domain_name" and len(value) > _CERTIFICATE_NAME_MAX:
            raise _Invalid(f"is longer than {_CERTIFICATE_NAME_MAX} characters, the most an ACM certificate's name has")
        return value

    @field_validator("hosted_zone_id")
    @classmethod
    def _check_hosted_zone_id(cls, value: str | None) -> str | None:
        if value is not None and not _HOSTED_ZONE_ID.fullmatch(value):
            raise _Invalid("is not a Route 53 hosted zone id")
        return value

    # --- rules between settings --------------------------------------------
    # A rule between two settings names the one the user changed: `-c
    # max_task_count=1` is about max_task_count, even though min_task_count=2
    # is what it collides with.

    @model_validator(mode="before")
    @classmethod
    def _renamed_keys(cls, values: Any) -> Any:
        if isinstance(values, Mapping):
            for old, (new, what) in _RENAMED.items():
                if old in values:
                    raise _Invalid(f"was renamed to {new}", key=old, value=values[old], allowed=what)
        return values

    @model_validator(mode="after")
    def _check_combinations(self, info: ValidationInfo) -> ProjectConfig:
        changed = _changed_keys(self, info)
        self._check_nat_gateways(changed)
        self._check_task_size(changed)
        self._check_task_counts(changed)
        self._check_aurora_capacity(changed)
        self._check_custom_domain()
        self._check_profiles_against_admin()
        self._check_sso()
        self._check_federation_names()
        self._check_model_deployments()
        return self

    def _check_model_deployments(self) -> None:
        """An endpoint may only use an instance type the project allows (IAM denies the others too)."""
        for deployment in self.model_deployments:
            if deployment.instance_type not in self.allowed_instance_types:
                raise _Invalid(
                    f"deploys {deployment.model_name!r} on {deployment.instance_type}, not in allowed_instance_types",
                    key="model_deployments",
                    value=deployment.instance_type,
                    allowed=", ".join(self.allowed_instance_types),
                )

    def _check_federation_names(self) -> None:
        """The sign-in page offers both lists: at least one provider, none twice; federation needs the pool."""
        if not self.cognito_identity_providers and not self.cognito_federation:
            raise _Invalid(
                "is empty and cognito_federation defines no provider",
                key="cognito_identity_providers",
                value=self.cognito_identity_providers,
                allowed=allowed("cognito_identity_providers"),
            )
        if not self.cognito_federation:
            return
        shown = [provider.name for provider in self.cognito_federation]
        if not self.cognito_enabled:
            raise _Invalid(
                "is only used with auth_mode=sso and oidc_provider=cognito",
                key="cognito_federation",
                value=shown,
                allowed="[] (the default), or set auth_mode=sso with oidc_provider=cognito",
            )
        twice = next((name for name in shown if name in self.cognito_identity_providers), None)
        if twice is not None:
            raise _Invalid(
                f"defines {twice!r}, which cognito_identity_providers lists too",
                key="cognito_federation",
                value=shown,
                allowed="provider names not in cognito_identity_providers (that list is for providers added by hand)",
            )

    def _check_sso(self) -> None:
        """An external issuer needs its discovery URL and client secret; Cognito-only keys need Cognito."""
        if not self.sso_enabled:
            return
        if self.oidc_provider == "external":
            missing = next((key for key in _EXTERNAL_KEYS if getattr(self, key) is None), None)
            if missing is not None:
                raise _Invalid(
                    "is empty, but oidc_provider=external needs it",
                    key=missing,
                    value="",
                    allowed=allowed(missing).removeprefix("empty, or "),
                )
            if self.cognito_domain_prefix is not None:
                raise _Invalid(
                    "is only used with oidc_provider=cognito",
                    key="cognito_domain_prefix",
                    value=self.cognito_domain_prefix,
                    allowed="empty with oidc_provider=external",
                )
            if self.cognito_identity_providers != ["COGNITO"]:
                raise _Invalid(
                    "is only used with oidc_provider=cognito (federate in your own provider instead)",
                    key="cognito_identity_providers",
                    value=self.cognito_identity_providers,
                    allowed="COGNITO (the default) with oidc_provider=external",
                )
            return
        given = next((key for key in _EXTERNAL_KEYS if getattr(self, key) is not None), None)
        if given is not None:
            raise _Invalid(
                "is only used with oidc_provider=external",
                key=given,
                value=getattr(self, given),
                allowed="empty with oidc_provider=cognito, or set oidc_provider=external",
            )
        for key in ("oidc_admin_group", "oidc_allowed_group"):
            group = getattr(self, key)
            if group is not None and any(character.isspace() for character in group):
                raise _Invalid(
                    "has a space, which Cognito group names cannot",
                    key=key,
                    value=group,
                    allowed="a name without spaces with oidc_provider=cognito",
                )
        if self.oidc_allowed_group == self.oidc_admin_group:
            raise _Invalid(
                "is the admin group too",
                key="oidc_allowed_group",
                value=self.oidc_allowed_group,
                allowed=f"empty or a group other than oidc_admin_group={self.oidc_admin_group}",
            )

    def _check_profiles_against_admin(self) -> None:
        admin = next((p for p in self.user_profiles if p.lower() == names.SERVER_USERNAME), None)
        if self.accounts_enabled and admin is not None:
            raise _Invalid(
                f"names {admin!r}, the MLflow admin's user name in accounts mode",
                key="user_profiles",
                value=self.user_profiles,
                allowed=f"profile names other than {names.SERVER_USERNAME}",
            )

    def _check_nat_gateways(self, changed: _Changed) -> None:
        if self.nat_gateways <= self.az_count:
            return
        if changed.blame("nat_gateways", "az_count") == "az_count":
            raise _Invalid(
                f"is less than nat_gateways={self.nat_gateways}",
                key="az_count",
                value=self.az_count,
                allowed=f"{self.nat_gateways}-3 (one AZ per NAT gateway)",
            )
        raise _Invalid(
            f"is more than az_count={self.az_count}",
            key="nat_gateways",
            value=self.nat_gateways,
            allowed=f"1-{self.az_count}, at most one per AZ",
        )

    def _check_task_size(self, changed: _Changed) -> None:
        memory = _FARGATE_MEMORY[self.task_cpu]
        if self.task_memory_mib not in memory:
            if changed.blame("task_memory_mib", "task_cpu") == "task_cpu":
                cpus = [cpu for cpu, sizes in _FARGATE_MEMORY.items() if self.task_memory_mib in sizes]
                raise _Invalid(
                    f"is not accepted by Fargate with task_memory_mib={self.task_memory_mib}",
                    key="task_cpu",
                    value=self.task_cpu,
                    allowed=f"{', '.join(map(str, cpus)) or 'none'} with task_memory_mib={self.task_memory_mib}",
                )
            raise _Invalid(
                f"is not accepted by Fargate with task_cpu={self.task_cpu}",
                key="task_memory_mib",
                value=self.task_memory_mib,
                allowed=_describe(memory),
            )
        needed = task_sizing.memory_needed_mib(self.mlflow_workers)
        if self.task_memory_mib >= needed:
            return
        estimate = (
            f"{needed} MiB or more (measured peak about {task_sizing.peak_mib(self.mlflow_workers)} MiB "
            f"plus {task_sizing.HEADROOM:.0%} headroom)"
        )
        if changed.blame("mlflow_workers", "task_memory_mib") == "task_memory_mib":
            raise _Invalid(
                f"is too small for mlflow_workers={self.mlflow_workers}, which need {estimate}",
                key="task_memory_mib",
                value=self.task_memory_mib,
                allowed=f"{_smallest_task(self.task_cpu, needed)} or more, or fewer mlflow_workers",
            )
        most = task_sizing.max_workers(self.task_memory_mib)
        fitting = {0: "none", 1: "1"}.get(most, f"1-{most}")
        raise _Invalid(
            f"needs a task of {estimate}, more than task_memory_mib={self.task_memory_mib}",
            key="mlflow_workers",
            value=self.mlflow_workers,
            allowed=f"{fitting} with task_memory_mib={self.task_memory_mib}; {self.mlflow_workers} "
            f"with {_smallest_task(self.task_cpu, needed)} or more",
        )

    def _check_task_counts(self, changed: _Changed) -> None:
        if self.min_task_count > self.max_task_count:
            if changed.blame("min_task_count", "max_task_count") == "max_task_count":
                raise _Invalid(
                    f"is less than min_task_count={self.min_task_count}",
                    key="max_task_count",
                    value=self.max_task_count,
                    allowed=f"{self.min_task_count}-20",
                )
            raise _Invalid(
                f"is more than max_task_count={self.max_task_count}",
                key="min_task_count",
                value=self.min_task_count,
                allowed=f"1-{self.max_task_count}",
            )
        desired = self.desired_task_count
        if self.min_task_count <= desired <= self.max_task_count:
            return
        bound = "min_task_count" if desired < self.min_task_count else "max_task_count"
        if changed.blame("desired_task_count", bound) == "min_task_count":
            raise _Invalid(
                f"is more than desired_task_count={desired}",
                key="min_task_count",
                value=self.min_task_count,
                allowed=f"1-{desired} (at most desired_task_count)",
            )
        if changed.blame("desired_task_count", bound) == "max_task_count":
            raise _Invalid(
                f"is less than desired_task_count={desired}",
                key="max_task_count",
                value=self.max_task_count,
                allowed=f"{desired}-20 (at least desired_task_count)",
            )
        raise _Invalid(
            "is outside the autoscaling range",
            key="desired_task_count",
            value=desired,
            allowed=f"{self.min_task_count}-{self.max_task_count} (min_task_count to max_task_count)",
        )

    def _check_aurora_capacity(self, changed: _Changed) -> None:
        if self.aurora_min_acu <= self.aurora_max_acu:
            return
        if changed.blame("aurora_min_acu", "aurora_max_acu") == "aurora_max_acu":
            raise _Invalid(
                f"is less than aurora_min_acu={self.aurora_min_acu:g}",
                key="aurora_max_acu",
                value=self.aurora_max_acu,
                allowed=f"{max(self.aurora_min_acu, 1):g}-256 in steps of 0.5",
            )
        raise _Invalid(
            f"is more than aurora_max_acu={self.aurora_max_acu:g}",
            key="aurora_min_acu",
            value=self.aurora_min_acu,
            allowed=f"0-{self.aurora_max_acu:g} in steps of 0.5",
        )

    def _check_custom_domain(self) -> None:
        """A custom domain needs its zone (id and name, imported without a lookup) and must sit in it."""
        given = [key for key in _DOMAIN_KEYS if getattr(self, key) is not None]
        if given and len(given) < len(_DOMAIN_KEYS):
            missing = [key for key in _DOMAIN_KEYS if key not in given]
            raise _Invalid(
                f"is set but {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not",
                key=given[0],
                value=getattr(self, given[0]),
                allowed="all three of domain_name, hosted_zone_id, hosted_zone_name, or none",
            )
        zone = self.hosted_zone_name
        if self.domain_name is not None and zone is not None:
            if self.domain_name != zone and not self.domain_name.endswith(f".{zone}"):
                raise _Invalid(
                    f"is not inside hosted_zone_name={zone}",
                    key="domain_name",
                    value=self.domain_name,
                    allowed=f"{zone} or a name ending in .{zone}",
                )

    # --- construction --------------------------------------------------------

    def __init__(self, **values: Any) -> None:
        # pydantic's documented way to hand a validation context to __init__.
        try:
            self.__pydantic_validator__.validate_python(values, self_instance=self, context=_CONTEXT.get())
        except ValidationError as error:
            raise ConfigError(_one_line(error, values, type(self).documented())) from None

    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> ProjectConfig:
        """Build from the whole CDK context, ignoring the CDK's own keys ("@..." flags, "a:b" keys)."""
        known = list(cls.model_fields)
        ours = {k: v for k, v in context.items() if not k.startswith("@") and ":" not in k}
        for key in ours:
            if key not in known and key not in _RENAMED:  # a renamed key gets its own message
                close = difflib.get_close_matches(key, known, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise ConfigError(
                    f"Invalid configuration: unknown context key {key!r}{hint}; allowed keys: {', '.join(known)}."
                )
        with _validation_context({"changed": _changed_from(ours, _base_context())}):
            return cls(**ours)

    @classmethod
    def documented(cls) -> dict[str, tuple[Any, str, str]]:
        """Key -> (default, allowed, purpose), in declaration order (README table, cdk.json)."""
        result = {}
        for name, info in cls.model_fields.items():
            extra = info.json_schema_extra
            assert isinstance(extra, dict)
            default = None if info.default is PydanticUndefined else info.default
            result[name] = (default, str(extra["allowed"]), str(extra["purpose"]))
        return result

    # --- derived values ------------------------------------------------------

    @property
    def destroy_on_removal(self) -> bool:
        """True for dev stacks whose data may go with the stack."""
        return self.removal_policy == "destroy"

    @property
    def cdk_removal_policy(self) -> RemovalPolicy:
        """For stateful resources; the database uses SNAPSHOT instead of RETAIN."""
        return RemovalPolicy.DESTROY if self.destroy_on_removal else RemovalPolicy.RETAIN

    @property
    def auto_pause_enabled(self) -> bool:
        """Aurora pauses when idle only with a 0 ACU floor."""
        return self.aurora_min_acu == 0

    @property
    def aurora_auto_pause(self) -> Duration | None:
        """Idle time before Aurora pauses, or None when it never pauses."""
        return Duration.minutes(self.aurora_auto_pause_minutes) if self.auto_pause_enabled else None

    @property
    def creates_studio_domain(self) -> bool:
        """No domain id given: the Studio stack creates a domain in the project VPC."""
        return self.sagemaker_domain_id is None

    @property
    def accounts_enabled(self) -> bool:
        """MLflow's auth app decides who may do what; each Studio profile gets its own MLflow user."""
        return self.auth_mode == "accounts"

    @property
    def sso_enabled(self) -> bool:
        """People sign in with an OIDC provider; code sends bearer tokens from it."""
        return self.auth_mode == "sso"

    @property
    def cognito_enabled(self) -> bool:
        """sso mode with the Cognito user pool the stack creates."""
        return self.sso_enabled and self.oidc_provider == "cognito"

    @property
    def sessions_enabled(self) -> bool:
        """MLflow itself signs sessions (accounts and sso modes): every task needs the same key."""
        return self.auth_mode in ("accounts", "sso")

    def oauth_client_secret_name(self, profile: str) -> str:
        """Secrets Manager name of one profile's OAuth client (sso mode): client_id, client_secret, token_url, scope.

        As long as :meth:`user_secret_name` at most, so it fits the role tag the lab reads it from.
        """
        return f"{self.credentials_secret_name}/users/{profile}/oauth"

    def user_secret_name(self, profile: str) -> str:
        """Secrets Manager name of one profile's MLflow login (accounts mode).

        The fixed last part keeps names from ending in a hyphen and six
        characters (what Secrets Manager appends to ARNs), whatever the profile.
        """
        return f"{self.credentials_secret_name}/users/{profile}/login"

    @property
    def custom_domain(self) -> CustomDomainSettings | None:
        """The domain and its zone when domain_name is set (ACM certificate, API custom domain, HTTPS to the ALB)."""
        if self.domain_name is None or self.hosted_zone_id is None or self.hosted_zone_name is None:
            return None
        return CustomDomainSettings(self.domain_name, self.hosted_zone_id, self.hosted_zone_name)

    @property
    def log_retention(self) -> logs.RetentionDays:
        """The enum CDK log groups want (jsii's Python enum does not carry the day count)."""
        return logs.RetentionDays[_LOG_RETENTION[self.log_retention_days]]


@functools.cache
def sagemaker_instance_types() -> frozenset[str]:
    """Instance types SageMaker accepts for training jobs and endpoints, from botocore's API model."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    shapes = ("TrainingInstanceType", "ProductionVariantInstanceType")
    return frozenset(name for shape in shapes for name in model.shape_for(shape).enum)


# --- which settings the user changed ------------------------------------------

_CONTEXT: ContextVar[dict[str, Any] | None] = ContextVar("project_config_context", default=None)


@contextmanager
def _validation_context(context: dict[str, Any]) -> Iterator[None]:
    token = _CONTEXT.set(context)
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def _same(value: Any, base: Any) -> bool:
    """`-c key=value` arrives as a string: "4" is the same setting as cdk.json's 4."""
    return bool(value == base or str(value).strip() == str(base).strip())


def _base_context() -> dict[str, Any]:
    """cdk.json's settings, which `-c` overrides; the code defaults if cdk.json cannot be read."""
    try:
        return cdk_json_context(CDK_JSON)
    except (OSError, ValueError, KeyError):
        return {name: default for name, (default, _, _) in ProjectConfig.documented().items()}


def _changed_from(values: Mapping[str, Any], base: Mapping[str, Any]) -> frozenset[str]:
    return frozenset(key for key, value in values.items() if key not in base or not _same(value, base[key]))


class _Changed:
    """Which settings to blame for a conflict: first those overridden on the command line
    (differing from cdk.json), then those differing from the code defaults (cdk.json edited)."""

    def __init__(self, *tiers: frozenset[str]) -> None:
        self.tiers = tiers

    def blame(self, usual: str, other: str) -> str:
        """``usual`` unless only ``other`` was changed."""
        for tier in self.tiers:
            if usual in tier:
                return usual
            if other in tier:
                return other
        return usual


def _changed_keys(config: ProjectConfig, info: ValidationInfo) -> _Changed:
    defaults = {name: default for name, (default, _, _) in ProjectConfig.documented().items()}
    current = {name: getattr(config, name) for name in defaults}
    from_defaults = _changed_from(current, defaults)
    given = (info.context or {}).get("changed")
    explicit = frozenset(given) if given is not None else frozenset(config.model_fields_set) & from_defaults
    return _Changed(explicit, from_defaults)


def _is_dns_name(value: str) -> bool:
    """At least two labels of letters, digits and inner hyphens; not an IP address; 253 characters at most."""
    labels = value.split(".")
    return (
        len(value) <= 253
        and len(labels) >= 2
        and all(_DNS_LABEL.fullmatch(label) for label in labels)
        and not labels[-1].isdigit()
    )


def _federated_provider(item: Any) -> FederatedProvider:
    """One item of cognito_federation, checked for what its type needs (a problem names the provider)."""
    if not isinstance(item, Mapping):
        raise _Invalid("holds something that is not a provider definition (a JSON object)")
    name, kind = item.get("name"), item.get("type")
    if kind not in FEDERATION_TYPES:
        raise _Invalid(f"gives provider {name!r} the type {kind!r}, which is not {', '.join(FEDERATION_TYPES)}")
    required, optional = _FEDERATION_KEYS[kind]
    unknown = sorted(set(item) - {"name", "type", *required, *optional})
    if unknown:
        raise _Invalid(f"gives {kind} provider {name!r} the key {unknown[0]!r}, which that type does not take")
    for key in ("name", *required):
        if not isinstance(item.get(key), str) or not item[key].strip():
            raise _Invalid(f"gives {kind} provider {name!r} no {key} (a non-empty string)")
    fields = {key: item[key].strip() for key in ("name", "type", *required)}
    name = fields["name"]
    if kind == "google":
        if name != GOOGLE_PROVIDER_NAME:
            raise _Invalid(f"names a google provider {name!r}; Cognito names it {GOOGLE_PROVIDER_NAME}")
    elif not _IDENTITY_PROVIDER.fullmatch(name) or name in RESERVED_PROVIDER_NAMES:
        raise _Invalid(f"names the {kind} provider {name!r}, which is not a name Cognito accepts for it")
    if "client_id" in fields and not _CLIENT_ID.fullmatch(fields["client_id"]):
        raise _Invalid(
            f"gives {kind} provider {name!r} the client_id {fields['client_id']!r}, which is not an OAuth client id"
        )
    secret = fields.get("client_secret_name")
    if secret is not None and (not _SECRET_NAME.fullmatch(secret) or _ARN_SUFFIX.search(secret)):
        raise _Invalid(
            f"gives {kind} provider {name!r} the client_secret_name {secret!r}, "
            "which is not a usable Secrets Manager name"
        )
    for key in ("issuer_url", "metadata_url"):
        if key in fields and not _is_https_url(fields[key]):
            raise _Invalid(f"gives {kind} provider {name!r} the {key} {fields[key]!r}, which is not an https URL")
    if "scopes" in item:
        scopes = item["scopes"]
        if isinstance(scopes, str):
            scopes = scopes.split()
        if not isinstance(scopes, list) or not all(isinstance(s, str) and _SCOPE.fullmatch(s) for s in scopes):
            raise _Invalid(f"gives {kind} provider {name!r} scopes that are not a list of OAuth scopes")
        if "openid" not in scopes:
            raise _Invalid(f"gives {kind} provider {name!r} scopes without openid, which Cognito asks for")
        fields["scopes"] = tuple(dict.fromkeys(scopes))
    return FederatedProvider(**fields)


def _is_https_url(value: str) -> bool:
    """https://, a DNS name (no port, no credentials), any path."""
    scheme, _, rest = value.partition("://")
    host = rest.split("/", 1)[0]
    return scheme == "https" and _is_dns_name(host.lower()) and not any(c.isspace() for c in value)


def allowed(key: str) -> str:
    """What a setting accepts, as the README and the error messages say it."""
    return ProjectConfig.documented()[key][1]


def _one_line(error: ValidationError, values: Mapping[str, Any], documented: dict[str, tuple[Any, str, str]]) -> str:
    """The first problem pydantic found, as 'Invalid configuration: key=value problem; allowed: ...'."""
    first = error.errors()[0]
    cause = (first.get("ctx") or {}).get("error")
    key = str(first["loc"][0]) if first["loc"] else ""
    if isinstance(cause, _Invalid):
        key = cause.key or key
        value = cause.value if cause.key else values.get(key, first.get("input"))
        return _message(key, value, cause.problem, cause.allowed or documented[key][1])
    problem = _PROBLEMS.get(first["type"], "is out of range")
    return _message(key, first.get("input"), problem, documented[key][1])


def cdk_json_context(path: Path = CDK_JSON) -> dict[str, Any]:
    """cdk.json's context; tests pass it to cdk.App(context=...), which does not read cdk.json."""
    return dict(json.loads(path.read_text(encoding="utf-8"))["context"])


def config_from_app(app: Construct) -> ProjectConfig:
    """The validated config for an app (or any construct) from its tree's context."""
    return ProjectConfig.from_context(app.node.get_all_context())
