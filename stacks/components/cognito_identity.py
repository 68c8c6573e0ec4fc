"""sso mode's identity provider when the stack makes one: a Cognito user pool with hosted sign-in."""

from collections.abc import Sequence
from typing import Any

from aws_cdk import Aws, CfnResource, Duration, Fn, RemovalPolicy, SecretValue
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from stacks import names
from stacks.components.identity_federation import IdentityFederation
from stacks.federation import FederatedProvider

DISCOVERY_PATH = "/.well-known/openid-configuration"
UI_CLIENT_NAME = "mlflow-ui"
# Token lifetimes of the UI client. The server keeps its own session after sign-in; a
# refresh token lasts one working day, so nobody stays signed in with the provider for longer.
_UI_TOKEN_MINUTES = {"AccessToken": 60, "IdToken": 60, "RefreshToken": 12 * 60}


class CognitoIdentity(Construct):
    """User pool, groups, hosted sign-in domain, API scope and the MLflow UI's OIDC client.

    People are created by an administrator (no self sign-up), sign in with
    their email address, may enrol a TOTP app for MFA, and reset passwords by
    email; or they come through a provider federated into the pool: one the
    stack creates from ``federation`` (:class:`IdentityFederation`), or one
    added by hand, named in ``identity_providers`` with ``COGNITO`` (the
    pool's own users). The UI client offers both lists. Membership of
    ``admin_group`` makes an MLflow admin; with ``allowed_group`` only its
    members may sign in.

    The UI client is confidential (authorization code grant, scopes openid,
    email and profile). Its id and its secret, which Cognito generates, reach
    the MLflow tasks through ONE secret, ``client_secret`` (JSON ``client_id``,
    ``client_secret``), whose value CloudFormation copies from the client's
    ``ClientSecret`` attribute: the template holds only that reference.

    **Sign-in URLs.** The client must list ``https://<public host>/callback``
    and ``https://<public host>/``. With ``public_url`` (a custom domain,
    known at synth time) they are part of the client here. Without one the
    public host is the HTTP API's, created later in the gateway stack, which
    depends on this stack: referring to it here would be a cycle, and moving
    the client there would make the tasks here depend on the gateway stack.
    The client is then created with OAuth off, and the gateway stack turns it
    on with the API's URLs (:class:`CallbackRegistration`), sending the whole
    configuration from :meth:`ui_client_settings`, so both stacks describe
    the same client and a change to it here changes that call too (it runs
    again in the same ``cdk deploy --all``, right after this stack).

    Code signs in with the client-credentials grant of its own app client
    (:meth:`add_machine_client`), asking for the scope ``mlflow/api``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        domain_prefix: str | None,
        identity_providers: Sequence[str],
        federation: Sequence[FederatedProvider] = (),
        admin_group: str,
        allowed_group: str | None,
        public_url: str | None,
        removal_policy: RemovalPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.user_pool = cognito.UserPool(
            self,
            "UserPool",
            user_pool_name="mlflow",
            self_sign_up_enabled=False,
            sign_in_aliases=cognito.SignInAliases(email=True, username=False),
            sign_in_case_sensitive=False,
            auto_verify=cognito.AutoVerifiedAttrs(email=True),
            standard_attributes=cognito.StandardAttributes(
                email=cognito.StandardAttribute(required=True, mutable=True)
            ),
            mfa=cognito.Mfa.OPTIONAL,
            mfa_second_factor=cognito.MfaSecondFactor(otp=True, sms=False),
            password_policy=cognito.PasswordPolicy(
                min_length=12,
                require_lowercase=True,
                require_uppercase=True,
                require_digits=True,
                require_symbols=True,
                temp_password_validity=Duration.days(7),
            ),
            account_recovery=cognito.AccountRecovery.EMAIL_ONLY,
            feature_plan=cognito.FeaturePlan.ESSENTIALS,
            deletion_protection=removal_policy != RemovalPolicy.DESTROY,
            removal_policy=removal_policy,
        )
        self.admin_group = cognito.UserPoolGroup(
            self,
            "AdminGroup",
            user_pool=self.user_pool,
            group_name=admin_group,
            description="MLflow admins: manage users and permissions on every experiment and model",
            precedence=0,
        )
        self.allowed_group = (
            cognito.UserPoolGroup(
                self,
                "AllowedGroup",
                user_pool=self.user_pool,
                group_name=allowed_group,
                description="People who may sign in to MLflow",
                precedence=1,
            )
            if allowed_group is not None
            else None
        )
        # Kept with the pool under retain: who is an admin is data too.
        for group in filter(None, (self.admin_group, self.allowed_group)):
            group.apply_removal_policy(removal_policy)
        # The account id makes the default prefix unique (prefixes are global per region).
        prefix = domain_prefix if domain_prefix is not None else Fn.join("-", ["mlflow", Aws.ACCOUNT_ID])
        self.domain = self.user_pool.add_domain(
            "Domain", cognito_domain=cognito.CognitoDomainOptions(domain_prefix=prefix)
        )
        self.api = self.user_pool.add_resource_server(
            "Api",
            identifier=names.API_RESOURCE_SERVER,
            user_pool_resource_server_name="MLflow tracking API",
            scopes=[
                cognito.ResourceServerScope(
                    scope_name=names.API_SCOPE_NAME, scope_description="Call the MLflow tracking API"
                )
            ],
        )

        self.federation = IdentityFederation(self, "Federation", user_pool=self.user_pool, providers=federation)
        self.identity_providers = [*identity_providers, *self.federation.names]

        self.ui_client = cognito.CfnUserPoolClient(
            self, "UiClient", user_pool_id=self.user_pool.user_pool_id, generate_secret=True
        )
        # A client may only offer providers that exist: the stack's own are created first.
        self.ui_client.node.add_dependency(self.federation)
        settings = self.ui_client_settings(public_url)
        for key, value in settings.items():
            self.ui_client.add_property_override(key, value)
        self.public_url = public_url
        self.client_secret = secretsmanager.Secret(
            self,
            "UiClientSecret",
            description="OIDC client of the MLflow UI in the Cognito user pool (client_id, client_secret)",
            secret_object_value={
                "client_id": SecretValue.resource_attribute(self.ui_client.ref),
                "client_secret": SecretValue.resource_attribute(self.ui_client.attr_client_secret),
            },
            # Derived from the client, which goes with the stack: nothing to keep.
            removal_policy=RemovalPolicy.DESTROY,
        )

        self.sign_in_url = self.domain.base_url()
        self.token_url = f"{self.sign_in_url}/oauth2/token"
        self.issuer_url = self.user_pool.user_pool_provider_url
        self.discovery_url = f"{self.issuer_url}{DISCOVERY_PATH}"

    def ui_client_settings(self, public_url: str | None) -> dict[str, Any]:
        """The UI client's whole configuration (UpdateUserPoolClient's request fields), OAuth only with a URL.

        UpdateUserPoolClient resets every field it is not given, so the gateway
        stack's call sends all of these, not just the URLs.
        """
        settings: dict[str, Any] = {
            "ClientName": UI_CLIENT_NAME,
            "ExplicitAuthFlows": ["ALLOW_REFRESH_TOKEN_AUTH"],
            "PreventUserExistenceErrors": "ENABLED",
            "EnableTokenRevocation": True,
            "AuthSessionValidity": 3,
            "AccessTokenValidity": _UI_TOKEN_MINUTES["AccessToken"],
            "IdTokenValidity": _UI_TOKEN_MINUTES["IdToken"],
            "RefreshTokenValidity": _UI_TOKEN_MINUTES["RefreshToken"],
            "TokenValidityUnits": {key: "minutes" for key in _UI_TOKEN_MINUTES},
            "SupportedIdentityProviders": list(self.identity_providers),
        }
        if public_url is None:
            return {**settings, "AllowedOAuthFlowsUserPoolClient": False}
        return {
            **settings,
            "AllowedOAuthFlowsUserPoolClient": True,
            "AllowedOAuthFlows": ["code"],
            "AllowedOAuthScopes": ["openid", "email", "profile"],
            "CallbackURLs": [f"{public_url}{names.OIDC_CALLBACK_PATH}"],
            "LogoutURLs": [f"{public_url}/"],
        }

    def add_machine_client(self, scope: Construct, construct_id: str, *, name: str) -> cognito.CfnUserPoolClient:
        """A confidential client for code: client-credentials grant, scope mlflow/api, 1-hour tokens."""
        client = cognito.CfnUserPoolClient(
            scope,
            construct_id,
            user_pool_id=self.user_pool.user_pool_id,
            client_name=name,
            generate_secret=True,
            allowed_o_auth_flows_user_pool_client=True,
            allowed_o_auth_flows=["client_credentials"],
            allowed_o_auth_scopes=[names.API_SCOPE],
            explicit_auth_flows=["ALLOW_REFRESH_TOKEN_AUTH"],
            prevent_user_existence_errors="ENABLED",
            enable_token_revocation=True,
            access_token_validity=60,
            token_validity_units=cognito.CfnUserPoolClient.TokenValidityUnitsProperty(access_token="minutes"),  # noqa: S106 - a unit
        )
        # The scope must exist first (the resource server is in the same stack, unreferenced otherwise).
        api_resource = self.api.node.default_child
        assert isinstance(api_resource, CfnResource)
        client.add_resource_dependency(api_resource)
        return client
