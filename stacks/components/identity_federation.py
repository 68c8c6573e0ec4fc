"""Google, OIDC and SAML providers the stack adds to the Cognito pool (the cognito_federation setting)."""

from collections.abc import Sequence

from aws_cdk import SecretValue
from aws_cdk import aws_cognito as cognito
from constructs import Construct

from stacks.federation import (
    CLIENT_SECRET_FIELD,
    SAML_EMAIL_ATTRIBUTE,
    SAML_NAME_ATTRIBUTE,
    FederatedProvider,
)


class IdentityFederation(Construct):
    """One identity provider in ``user_pool`` per item of ``providers``.

    Each maps the provider's email (and name) to the pool's attributes: the
    pool signs people in by email, and MLflow names a person by it. A client
    secret is a Secrets Manager dynamic reference (field ``client_secret``
    of the named secret), resolved by CloudFormation at deploy time, so no
    template holds it. ``names`` are what the UI client must offer; the
    client depends on this construct, so CloudFormation creates them first.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        user_pool: cognito.IUserPool,
        providers: Sequence[FederatedProvider],
    ) -> None:
        super().__init__(scope, construct_id)
        self.names = [provider.name for provider in providers]
        self.providers = [self._provider(user_pool, provider) for provider in providers]

    def _provider(self, user_pool: cognito.IUserPool, spec: FederatedProvider) -> cognito.IUserPoolIdentityProvider:
        if spec.type == "google":
            assert spec.client_id is not None and spec.client_secret_name is not None
            return cognito.UserPoolIdentityProviderGoogle(
                self,
                spec.name,
                user_pool=user_pool,
                client_id=spec.client_id,
                client_secret_value=_client_secret(spec.client_secret_name),
                scopes=["openid", "email", "profile"],
                attribute_mapping=cognito.AttributeMapping(
                    email=cognito.ProviderAttribute.GOOGLE_EMAIL,
                    email_verified=cognito.ProviderAttribute.GOOGLE_EMAIL_VERIFIED,
                    fullname=cognito.ProviderAttribute.GOOGLE_NAME,
                ),
            )
        if spec.type == "oidc":
            assert spec.client_id is not None and spec.client_secret_name is not None and spec.issuer_url is not None
            return cognito.UserPoolIdentityProviderOidc(
                self,
                spec.name,
                user_pool=user_pool,
                name=spec.name,
                issuer_url=spec.issuer_url,
                client_id=spec.client_id,
                # A {{resolve:secretsmanager:...}} reference, not the value (the prop is a plain string).
                client_secret=_client_secret(spec.client_secret_name).unsafe_unwrap(),
                scopes=list(spec.scopes),
                attribute_request_method=cognito.OidcAttributeRequestMethod.GET,
                attribute_mapping=cognito.AttributeMapping(
                    email=cognito.ProviderAttribute.other("email"),
                    fullname=cognito.ProviderAttribute.other("name"),
                ),
            )
        assert spec.type == "saml" and spec.metadata_url is not None
        return cognito.UserPoolIdentityProviderSaml(
            self,
            spec.name,
            user_pool=user_pool,
            name=spec.name,
            metadata=cognito.UserPoolIdentityProviderSamlMetadata.url(spec.metadata_url),
            attribute_mapping=cognito.AttributeMapping(
                email=cognito.ProviderAttribute.other(SAML_EMAIL_ATTRIBUTE),
                fullname=cognito.ProviderAttribute.other(SAML_NAME_ATTRIBUTE),
            ),
        )


def _client_secret(secret_name: str) -> SecretValue:
    """The provider's client secret as a reference CloudFormation resolves at deploy time."""
    return SecretValue.secrets_manager(secret_name, json_field=CLIENT_SECRET_FIELD)
