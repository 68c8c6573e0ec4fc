"""What an identity provider federated into the Cognito pool is: one item of the cognito_federation setting.

Shared by the configuration, which validates the items, and the construct
that creates them in the pool, so neither imports the other.
"""

from dataclasses import dataclass
from typing import Final

FEDERATION_TYPES: Final = ("google", "oidc", "saml")
# Cognito's name for a Google provider: it accepts no other.
GOOGLE_PROVIDER_NAME: Final = "Google"
# Names Cognito keeps for its own users and its built-in social providers.
RESERVED_PROVIDER_NAMES: Final = ("COGNITO", "Google", "Facebook", "LoginWithAmazon", "SignInWithApple")
# The JSON field of a provider's Secrets Manager secret that holds its client secret.
CLIENT_SECRET_FIELD: Final = "client_secret"  # noqa: S105 - a field's name
# Scopes asked of an OIDC provider when its definition names none.
DEFAULT_OIDC_SCOPES: Final = ("openid", "email", "profile")
# The SAML attributes mapped to the pool's email and name (what Microsoft Entra ID and ADFS send by default).
SAML_EMAIL_ATTRIBUTE: Final = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress"
SAML_NAME_ATTRIBUTE: Final = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name"
# Where a federated provider sends people back to the pool (relative to the hosted sign-in domain).
IDP_RESPONSE_PATH: Final = "/oauth2/idpresponse"


@dataclass(frozen=True)
class FederatedProvider:
    """One provider the stack adds to the pool; which fields are set depends on ``type``.

    google: ``client_id``, ``client_secret_name``; oidc: ``issuer_url``,
    ``client_id``, ``client_secret_name``, ``scopes``; saml: ``metadata_url``.
    A client secret stays in Secrets Manager (field ``client_secret`` of the
    secret ``client_secret_name``): the template only refers to it.
    """

    name: str
    type: str
    client_id: str | None = None
    client_secret_name: str | None = None
    issuer_url: str | None = None
    scopes: tuple[str, ...] = DEFAULT_OIDC_SCOPES
    metadata_url: str | None = None
