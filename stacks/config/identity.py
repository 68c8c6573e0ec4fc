"""Who may use the server: the auth mode, single sign-on, and the Studio users."""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from stacks.auth_modes import AUTH_MODES, DEFAULT_AUTH_MODE, MODES, AuthMode, ModeNeeds
from stacks.config.base import (
    CLIENT_ID,
    IDENTITY_PROVIDER,
    Invalid,
    Section,
    empty_is_none,
    is_dns_name,
    is_https_url,
    is_secret_name,
    json_text,
    names_are_strings,
    setting,
)
from stacks.federation import (
    CLIENT_SECRET_FIELD,
    FEDERATION_TYPES,
    GOOGLE_PROVIDER_NAME,
    RESERVED_PROVIDER_NAMES,
    FederatedProvider,
)
from stacks.iam_callers import principals_from_mapping

OidcProvider = Literal["cognito", "external"]
# MLflow's auth app: permissions a user has on what nobody granted them explicitly.
Permission = Literal["READ", "EDIT", "MANAGE", "NO_PERMISSIONS"]
# Each profile adds about ten resources (two roles and their policies, a secret,
# the profile, the account); 20 keeps the Studio stack far below CloudFormation's
# 500-resource limit and the deploy short.
MAX_USER_PROFILES = 20
_PROFILE_NAME = re.compile(r"[a-zA-Z0-9](?:-*[a-zA-Z0-9]){0,62}")
_DISCOVERY_PATH = "/.well-known/openid-configuration"
# A group name as an identity provider puts it in a token: no commas (lists), no control characters.
_GROUP_NAME = re.compile(r"[^,\x00-\x1f\x7f]{1,128}")
# cognito_federation: the keys each provider type takes besides name and type (required, optional).
_FEDERATION_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "google": (("client_id", "client_secret_name"), ()),
    "oidc": (("issuer_url", "client_id", "client_secret_name"), ("scopes",)),
    "saml": (("metadata_url",), ()),
}
# An OAuth scope token (RFC 6749): printable ASCII without space, double quote or backslash.
_SCOPE = re.compile(r"[!#-\[\]-~]{1,256}")
# Cognito hosted UI prefixes: lowercase letters, digits, inner hyphens; never these words.
_DOMAIN_PREFIX = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_RESERVED_PREFIX_WORDS = ("aws", "amazon", "cognito")
_SM_NAME_RULE = "1-180 of A-Z a-z 0-9 / _ + = . @ -, not ending in a hyphen and 6 characters"


class Auth(Section):
    credentials_secret_name: str = setting(
        "mlflow-server-credentials",
        _SM_NAME_RULE,
        "Secrets Manager name of the MLflow credentials (shared mode: the one login; accounts mode: the "
        "admin); each profile's secret in accounts mode is <name>/users/<profile>/login",
    )
    auth_mode: AuthMode = setting(
        DEFAULT_AUTH_MODE,
        ", ".join(AUTH_MODES),
        "shared: one login checked by nginx; accounts: MLflow's own users and permissions, "
        "one MLflow user per Studio profile; sso: people sign in with an OIDC provider, code sends its tokens",
        problem="is not an authentication mode",
    )
    default_permission: Permission = setting(
        "READ",
        ", ".join(get_args(Permission)),
        "accounts and sso modes: what every user may do on experiments and models nobody granted them "
        "(creators get MANAGE on their own)",
        problem="is not an MLflow permission",
    )
    iam_sign_in: bool | None = setting(
        None,
        "empty (on where the mode supports it: accounts, and sso with oidc_provider=cognito), true, false",
        "code signs MLflow requests with its IAM role (SigV4) through a second HTTP API: each Studio "
        "profile's roles act as its MLflow user, no password read",
        problem="is not true, false or empty",
    )
    iam_principals: dict[str, str] = setting(
        {},
        'a JSON object of IAM role or user ARN -> MLflow user name, e.g. {"arn:aws:iam::123456789012:role/ci": "ci"}',
        "IAM sign-in: roles and users besides the Studio profiles' (CI pipelines) and the MLflow user each acts as",
    )

    @field_validator("iam_sign_in", mode="before")
    @classmethod
    def _unset(cls, value: Any) -> Any:
        return empty_is_none(value)

    @field_validator("iam_principals", mode="before")
    @classmethod
    def _check_principals(cls, value: Any) -> Any:
        """`-c iam_principals='{...}'` arrives as JSON text; every ARN and user is checked as the server will."""
        value = json_text(value, {})
        if not isinstance(value, Mapping):
            raise Invalid("is not a JSON object of ARN -> MLflow user")
        try:
            principals_from_mapping(value)
        except ValueError as error:
            raise Invalid(f"has a bad entry: {error}") from None
        return dict(value)

    @field_validator("credentials_secret_name")
    @classmethod
    def _check_secret_name(cls, value: str) -> str:
        if not is_secret_name(value):
            raise Invalid("is not a usable Secrets Manager name")
        return value

    @property
    def needs(self) -> ModeNeeds:
        """What the chosen mode needs (its row of the mode table)."""
        return MODES[self.auth_mode]

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


# sso mode: what only an external issuer uses, and what only the Cognito pool uses.
EXTERNAL_KEYS = ("oidc_discovery_url", "oidc_client_secret_name")


class Sso(Section):
    oidc_provider: OidcProvider = setting(
        "cognito",
        ", ".join(get_args(OidcProvider)),
        "sso mode: cognito creates a Cognito user pool with hosted sign-in; external uses your OIDC issuer",
        problem="is not an OIDC provider choice",
    )
    oidc_discovery_url: str | None = setting(
        None,
        f"empty, or an https URL ending in {_DISCOVERY_PATH} (required with oidc_provider=external)",
        "sso mode with an external issuer: its OpenID Connect discovery document",
    )
    oidc_client_secret_name: str | None = setting(
        None,
        f"empty, or {_SM_NAME_RULE} (required with oidc_provider=external)",
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

    @field_validator("oidc_allowed_group", *EXTERNAL_KEYS, "cognito_domain_prefix", mode="before")
    @classmethod
    def _empty(cls, value: Any) -> Any:
        return empty_is_none(value)

    @field_validator("oidc_discovery_url")
    @classmethod
    def _check_discovery_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        scheme, _, rest = value.partition("://")
        host = rest.split("/", 1)[0]
        if scheme != "https" or not value.endswith(_DISCOVERY_PATH) or not is_dns_name(host.lower()):
            raise Invalid("is not an https discovery URL")
        return value

    @field_validator("oidc_client_secret_name")
    @classmethod
    def _check_client_secret_name(cls, value: str | None) -> str | None:
        if value is not None and not is_secret_name(value):
            raise Invalid("is not a usable Secrets Manager name")
        return value

    @field_validator("oidc_admin_group", "oidc_allowed_group")
    @classmethod
    def _check_group(cls, value: str | None) -> str | None:
        if value is not None and not _GROUP_NAME.fullmatch(value):
            raise Invalid("is not a group name")
        return value

    @field_validator("cognito_identity_providers", "oidc_machine_clients", mode="before")
    @classmethod
    def _names_are_strings(cls, value: Any) -> Any:
        return names_are_strings(value)

    @field_validator("oidc_machine_clients")
    @classmethod
    def _check_machine_clients(cls, value: list[str]) -> list[str]:
        value = [client.strip() for client in value]
        if len(value) > 50:
            raise Invalid(f"has {len(value)} clients")
        bad = next((client for client in value if not CLIENT_ID.fullmatch(client)), None)
        if bad is not None:
            raise Invalid(f"holds {bad!r}, which is not an OAuth client id")
        if len(set(value)) != len(value):
            raise Invalid("names a client twice")
        return value

    @field_validator("cognito_identity_providers")
    @classmethod
    def _check_identity_providers(cls, value: list[str]) -> list[str]:
        value = [name.strip() for name in value]
        if len(value) > 10:
            raise Invalid(f"has {len(value)} providers")
        bad = next((name for name in value if not IDENTITY_PROVIDER.fullmatch(name)), None)
        if bad is not None:
            raise Invalid(f"holds {bad!r}, which is not a Cognito identity provider name")
        if len(set(value)) != len(value):
            raise Invalid("names a provider twice")
        return value

    @field_validator("cognito_federation", mode="before")
    @classmethod
    def _check_federation(cls, value: Any) -> Any:
        """`-c cognito_federation='[...]'` arrives as JSON text; each item is checked for its type's keys."""
        value = json_text(value, [])
        if not isinstance(value, list):
            raise Invalid("is not a list of provider definitions")
        if len(value) > 10:
            raise Invalid(f"has {len(value)} providers")
        providers = [_federated_provider(item) for item in value]
        seen: set[str] = set()
        for provider in providers:
            if provider.name in seen:
                raise Invalid(f"names provider {provider.name!r} twice")
            seen.add(provider.name)
        return providers

    @field_validator("cognito_domain_prefix")
    @classmethod
    def _check_domain_prefix(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not _DOMAIN_PREFIX.fullmatch(value):
            raise Invalid("is not a Cognito domain prefix")
        reserved = next((word for word in _RESERVED_PREFIX_WORDS if word in value), None)
        if reserved is not None:
            raise Invalid(f"contains {reserved!r}, which Cognito reserves")
        return value


def _federated_provider(item: Any) -> FederatedProvider:
    """One item of cognito_federation, checked for what its type needs (a problem names the provider)."""
    if not isinstance(item, Mapping):
        raise Invalid("holds something that is not a provider definition (a JSON object)")
    name, kind = item.get("name"), item.get("type")
    if kind not in FEDERATION_TYPES:
        raise Invalid(f"gives provider {name!r} the type {kind!r}, which is not {', '.join(FEDERATION_TYPES)}")
    required, optional = _FEDERATION_KEYS[kind]
    unknown = sorted(set(item) - {"name", "type", *required, *optional})
    if unknown:
        raise Invalid(f"gives {kind} provider {name!r} the key {unknown[0]!r}, which that type does not take")
    for key in ("name", *required):
        if not isinstance(item.get(key), str) or not item[key].strip():
            raise Invalid(f"gives {kind} provider {name!r} no {key} (a non-empty string)")
    fields = {key: item[key].strip() for key in ("name", "type", *required)}
    name = fields["name"]
    if kind == "google":
        if name != GOOGLE_PROVIDER_NAME:
            raise Invalid(f"names a google provider {name!r}; Cognito names it {GOOGLE_PROVIDER_NAME}")
    elif not IDENTITY_PROVIDER.fullmatch(name) or name in RESERVED_PROVIDER_NAMES:
        raise Invalid(f"names the {kind} provider {name!r}, which is not a name Cognito accepts for it")
    if "client_id" in fields and not CLIENT_ID.fullmatch(fields["client_id"]):
        raise Invalid(
            f"gives {kind} provider {name!r} the client_id {fields['client_id']!r}, which is not an OAuth client id"
        )
    secret = fields.get("client_secret_name")
    if secret is not None and not is_secret_name(secret):
        raise Invalid(
            f"gives {kind} provider {name!r} the client_secret_name {secret!r}, "
            "which is not a usable Secrets Manager name"
        )
    for key in ("issuer_url", "metadata_url"):
        if key in fields and not is_https_url(fields[key]):
            raise Invalid(f"gives {kind} provider {name!r} the {key} {fields[key]!r}, which is not an https URL")
    if "scopes" in item:
        scopes = item["scopes"]
        if isinstance(scopes, str):
            scopes = scopes.split()
        if not isinstance(scopes, list) or not all(isinstance(s, str) and _SCOPE.fullmatch(s) for s in scopes):
            raise Invalid(f"gives {kind} provider {name!r} scopes that are not a list of OAuth scopes")
        if "openid" not in scopes:
            raise Invalid(f"gives {kind} provider {name!r} scopes without openid, which Cognito asks for")
        fields["scopes"] = tuple(dict.fromkeys(scopes))
    return FederatedProvider(**fields)


@functools.cache
def sagemaker_instance_types() -> frozenset[str]:
    """Instance types SageMaker accepts for training jobs and endpoints, from botocore's API model."""
    import botocore.session

    model = botocore.session.get_session().get_service_model("sagemaker")
    shapes = ("TrainingInstanceType", "ProductionVariantInstanceType")
    return frozenset(name for shape in shapes for name in model.shape_for(shape).enum)


class ModelDeployment(BaseModel):
    """One registered model that deploys to its own SageMaker endpoint when `alias` moves."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    model_name: str = Field(min_length=1, max_length=256)
    alias: str = Field("champion", pattern=r"^[A-Za-z0-9_-]{1,255}$")
    instance_type: str = Field(min_length=1)
    instance_count: int = Field(1, ge=1, le=10)


class Studio(Section):
    sagemaker_domain_id: Annotated[str, StringConstraints(pattern=r"^d-[a-z0-9]{12}$")] | None = setting(
        None,
        "empty, or d- and 12 lowercase letters or digits",
        "existing Studio domain to use; empty creates one",
        problem="is not a SageMaker domain id",
    )
    user_profiles: list[str] = setting(
        ["mlflow-user"],
        f"1-{MAX_USER_PROFILES} distinct names of 1-63 letters, digits and inner hyphens",
        "Studio user profiles to create, each with its own roles (and its own MLflow user in accounts mode)",
    )
    allowed_instance_types: list[str] = setting(
        ["ml.m5.large", "ml.m5.xlarge", "ml.c5.xlarge"],
        "one or more SageMaker training or endpoint instance types, e.g. ml.m5.large",
        "instance types Studio users may train on and deploy endpoints to (caps their cost)",
    )
    model_deployments: list[ModelDeployment] = setting(
        [],
        "a list of {model_name, alias (default champion), instance_type, instance_count (1-10)}",
        "registered models that deploy to a SageMaker endpoint when their alias moves",
    )

    @field_validator("sagemaker_domain_id", mode="before")
    @classmethod
    def _empty(cls, value: Any) -> Any:
        return empty_is_none(value)

    @field_validator("user_profiles", mode="before")
    @classmethod
    def _names_are_strings(cls, value: Any) -> Any:
        return names_are_strings(value)

    @field_validator("model_deployments", mode="before")
    @classmethod
    def _json_text(cls, value: Any) -> Any:
        """`-c model_deployments='[...]'` arrives as JSON text; cdk.json gives the list itself."""
        return json_text(value, [])

    @field_validator("user_profiles")
    @classmethod
    def _check_profiles(cls, value: list[str]) -> list[str]:
        value = [name.strip() for name in value]
        if not value:
            raise Invalid("is empty")
        if len(value) > MAX_USER_PROFILES:
            raise Invalid(f"has {len(value)} profiles")
        bad = next((name for name in value if not _PROFILE_NAME.fullmatch(name)), None)
        if bad is not None:
            raise Invalid(f"holds {bad!r}, which is not a SageMaker user profile name")
        seen: set[str] = set()
        for name in value:
            # MLflow user names and secret names must not clash either.
            if name.lower() in seen:
                raise Invalid(f"names {name!r} twice (ignoring case)")
            seen.add(name.lower())
        return value

    @field_validator("allowed_instance_types")
    @classmethod
    def _check_instance_types(cls, value: list[str]) -> list[str]:
        if not value:
            raise Invalid("is empty")
        known = sagemaker_instance_types()
        for name in value:
            if name not in known:
                close = difflib.get_close_matches(name, sorted(known), n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise Invalid(f"has {name!r}, which is not a SageMaker training or endpoint instance type{hint}")
        if len(set(value)) != len(value):
            raise Invalid("lists an instance type twice")
        return value

    @property
    def creates_studio_domain(self) -> bool:
        """No domain id given: the Studio stack creates a domain in the project VPC."""
        return self.sagemaker_domain_id is None
