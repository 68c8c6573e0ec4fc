"""auth_mode=sso: the Cognito pool and its clients, an external issuer, and how the tasks get both.

Every synth here also runs cdk-nag (a finding fails synth), so each variant
passing synth is its AwsSolutions check too.
"""

import json
import re
from typing import Any

import pytest

from stacks import names
from tests.stacks.helpers import (
    DOMAIN,
    DOMAIN_CONTEXT,
    EXTERNAL_ISSUER_CONTEXT,
    FEDERATION,
    SSO_CONTEXT,
    Template,
    only,
    policy_statements,
    props,
    ref_id,
    render,
    resources,
    service_task_definition,
    statement_actions,
    statement_by_sid,
)
from tests.synth import synth_templates

POOL = "AWS::Cognito::UserPool"
CLIENT = "AWS::Cognito::UserPoolClient"
SECRET = "AWS::SecretsManager::Secret"
PROVIDER = "AWS::Cognito::UserPoolIdentityProvider"


@pytest.fixture(scope="module")
def external() -> dict[str, Template]:
    return synth_templates(**EXTERNAL_ISSUER_CONTEXT)


@pytest.fixture(scope="module")
def sso_domain() -> dict[str, Template]:
    """sso on a custom domain, with the optional settings away from their defaults (federation too)."""
    return synth_templates(
        **DOMAIN_CONTEXT,
        auth_mode="sso",
        oidc_allowed_group="mlflow-users",
        oidc_admin_group="ml-platform",
        cognito_identity_providers="COGNITO,CorpByHand",
        cognito_federation=json.dumps(FEDERATION),  # as `-c cognito_federation='[...]'` gives it
        cognito_domain_prefix="team-mlflow",
        oidc_machine_clients="ci-nightly,ci-weekly",
        removal_policy="destroy",
    )


def _container(template: Template, name: str) -> dict[str, Any]:
    definitions = service_task_definition(template)["ContainerDefinitions"]
    return next(c for c in definitions if c["Name"] == name)


def _environment(container: dict[str, Any]) -> dict[str, Any]:
    return {e["Name"]: e["Value"] for e in container.get("Environment", [])}


def _secrets(container: dict[str, Any]) -> dict[str, str]:
    return {s["Name"]: render(s["ValueFrom"]) for s in container.get("Secrets", [])}


def _ui_client(template: Template) -> tuple[str, dict[str, Any]]:
    clients = {k: r for k, r in resources(template, CLIENT).items() if r["Properties"]["ClientName"] == "mlflow-ui"}
    assert len(clients) == 1
    return next(iter(clients.items()))


def _registration(gateway: Template) -> dict[str, Any]:
    """The gateway stack's UpdateUserPoolClient call, parsed, with references rendered as ${...}."""
    calls = [r for r in resources(gateway, "Custom::AWS").values() if "UpdateUserPoolClient" in json.dumps(r)]
    assert len(calls) == 1
    create = calls[0]["Properties"]["Create"]
    assert calls[0]["Properties"]["Update"] == create  # the same call on every update
    return json.loads(render(create))


# --- Cognito pool, groups, domain ------------------------------------------------


def test_pool_admits_only_users_an_admin_creates_and_offers_totp(sso_templates: dict[str, Template]) -> None:
    vpc = sso_templates[names.VPC_STACK]
    logical_id, pool = only(vpc, POOL)
    p = pool["Properties"]
    assert p["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"] is True
    assert p["MfaConfiguration"] == "OPTIONAL" and p["EnabledMfas"] == ["SOFTWARE_TOKEN_MFA"]
    assert p["UsernameAttributes"] == ["email"] and p["AutoVerifiedAttributes"] == ["email"]
    policy = p["Policies"]["PasswordPolicy"]
    assert policy["MinimumLength"] >= 12
    assert all(policy[k] for k in ("RequireLowercase", "RequireUppercase", "RequireNumbers", "RequireSymbols"))
    assert p["UserPoolTier"] == "ESSENTIALS"
    # Kept data: the people and their groups survive `cdk destroy` under retain.
    assert p["DeletionProtection"] == "ACTIVE" and pool["DeletionPolicy"] == "Retain"
    assert p["AccountRecoverySetting"]["RecoveryMechanisms"] == [{"Name": "verified_email", "Priority": 1}]


def test_admin_group_and_default_domain_and_api_scope(sso_templates: dict[str, Template]) -> None:
    vpc = sso_templates[names.VPC_STACK]
    pool_id = only(vpc, POOL)[0]
    groups = list(resources(vpc, "AWS::Cognito::UserPoolGroup").values())
    assert [(g["Properties"]["GroupName"], ref_id(g["Properties"]["UserPoolId"])) for g in groups] == [
        ("mlflow-admins", pool_id)
    ]
    assert groups[0]["DeletionPolicy"] == "Retain"  # kept with the pool: who is an admin is data too
    domain = props(vpc, "AWS::Cognito::UserPoolDomain")
    assert render(domain["Domain"]) == "mlflow-${AWS::AccountId}"
    server = props(vpc, "AWS::Cognito::UserPoolResourceServer")
    assert server["Identifier"] == "mlflow" and [s["ScopeName"] for s in server["Scopes"]] == ["api"]


def test_optional_group_providers_and_prefix_reach_the_pool(sso_domain: dict[str, Template]) -> None:
    vpc = sso_domain[names.VPC_STACK]
    groups = {r["Properties"]["GroupName"] for r in resources(vpc, "AWS::Cognito::UserPoolGroup").values()}
    assert groups == {"ml-platform", "mlflow-users"}
    assert props(vpc, "AWS::Cognito::UserPoolDomain")["Domain"] == "team-mlflow"
    # The providers named in cognito_identity_providers, then those the stack creates.
    assert _ui_client(vpc)[1]["Properties"]["SupportedIdentityProviders"] == [
        "COGNITO", "CorpByHand", "Google", "CorpOIDC", "CorpSAML",
    ]  # fmt: skip
    environment = _environment(_container(vpc, "mlflow"))
    assert (environment["OIDC_ADMIN_GROUP"], environment["OIDC_ALLOWED_GROUP"]) == ("ml-platform", "mlflow-users")
    # The Studio profile's client first, then the pipelines' clients from the configuration.
    studio_client = next(
        k for k, r in resources(vpc, CLIENT).items() if r["Properties"]["ClientName"] == "studio-mlflow-user"
    )
    assert render(environment["OIDC_MACHINE_CLIENTS"]) == f"${{{studio_client}}},ci-nightly,ci-weekly"
    # removal_policy=destroy: the pool goes with the stack.
    _, pool = only(vpc, POOL)
    assert pool["Properties"]["DeletionProtection"] == "INACTIVE" and pool["DeletionPolicy"] == "Delete"
    assert {r["DeletionPolicy"] for r in resources(vpc, "AWS::Cognito::UserPoolGroup").values()} == {"Delete"}


# --- providers federated into the pool by configuration ----------------------------


def _providers(template: Template) -> dict[str, tuple[str, dict[str, Any]]]:
    """Provider name -> (logical id, properties)."""
    return {r["Properties"]["ProviderName"]: (k, r["Properties"]) for k, r in resources(template, PROVIDER).items()}


def test_federation_creates_one_provider_per_definition_in_the_pool(sso_domain: dict[str, Template]) -> None:
    vpc = sso_domain[names.VPC_STACK]
    providers = _providers(vpc)
    assert {name: p["ProviderType"] for name, (_, p) in providers.items()} == {
        "Google": "Google", "CorpOIDC": "OIDC", "CorpSAML": "SAML",
    }  # fmt: skip
    pool = only(vpc, POOL)[0]
    assert {ref_id(p["UserPoolId"]) for _, p in providers.values()} == {pool}
    google = providers["Google"][1]
    assert google["ProviderDetails"]["client_id"] == "1234-abc.apps.googleusercontent.com"
    assert set(google["ProviderDetails"]["authorize_scopes"].split()) == {"openid", "email", "profile"}
    assert google["AttributeMapping"] == {"email": "email", "email_verified": "email_verified", "name": "name"}
    oidc = providers["CorpOIDC"][1]
    assert oidc["ProviderDetails"]["oidc_issuer"] == "https://login.example.com/tenant"
    assert oidc["ProviderDetails"]["client_id"] == "mlflow-web"
    assert oidc["ProviderDetails"]["authorize_scopes"] == "openid email"
    assert oidc["AttributeMapping"] == {"email": "email", "name": "name"}
    saml = providers["CorpSAML"][1]
    assert saml["ProviderDetails"]["MetadataURL"] == "https://idp.example.com/saml/metadata.xml"
    assert saml["AttributeMapping"]["email"] == "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress"
    assert "name" in saml["AttributeMapping"]


def test_federated_client_secrets_are_secrets_manager_references(sso_domain: dict[str, Template]) -> None:
    providers = _providers(sso_domain[names.VPC_STACK])
    assert providers["Google"][1]["ProviderDetails"]["client_secret"] == (
        "{{resolve:secretsmanager:team/google-oauth:SecretString:client_secret::}}"
    )
    assert providers["CorpOIDC"][1]["ProviderDetails"]["client_secret"] == (
        "{{resolve:secretsmanager:team/corp-oidc:SecretString:client_secret::}}"
    )
    # Resolved by CloudFormation at deploy time: the stack neither creates nor reads those secrets.
    for template in sso_domain.values():
        text = json.dumps(template)
        assert "team/google-oauth" not in text.replace("{{resolve:secretsmanager:team/google-oauth:", "")
        assert "team/corp-oidc" not in text.replace("{{resolve:secretsmanager:team/corp-oidc:", "")


def test_ui_client_is_created_after_the_providers_it_offers(sso_domain: dict[str, Template]) -> None:
    vpc = sso_domain[names.VPC_STACK]
    client = _ui_client(vpc)[1]
    assert {k for k, _ in _providers(vpc).values()} <= set(client.get("DependsOn", []))


def test_the_gateway_registration_offers_the_federated_providers_too() -> None:
    """Without a domain the gateway stack's UpdateUserPoolClient sends ui_client_settings: it names them all."""
    import aws_cdk as cdk

    from stacks.components.cognito_identity import CognitoIdentity
    from stacks.config import ProjectConfig

    config = ProjectConfig(auth_mode="sso", cognito_federation=FEDERATION)
    identity = CognitoIdentity(
        cdk.Stack(cdk.App(), "Probe"),
        "Identity",
        domain_prefix=None,
        identity_providers=config.sso.cognito_identity_providers,
        federation=config.sso.cognito_federation,
        admin_group="mlflow-admins",
        allowed_group=None,
        public_url=None,
        removal_policy=cdk.RemovalPolicy.DESTROY,
    )
    settings = identity.ui_client_settings("https://abc.execute-api.eu-west-1.amazonaws.com")
    assert settings["SupportedIdentityProviders"] == ["COGNITO", "Google", "CorpOIDC", "CorpSAML"]
    assert settings["AllowedOAuthFlowsUserPoolClient"] is True


# --- the UI client and its one secret ------------------------------------------------


def test_ui_client_is_confidential_and_its_secret_holds_only_references(sso_templates: dict[str, Template]) -> None:
    vpc = sso_templates[names.VPC_STACK]
    client_id, client = _ui_client(vpc)
    assert client["Properties"]["GenerateSecret"] is True
    ui_secrets = [
        r["Properties"] for r in resources(vpc, SECRET).values() if "client_id" in json.dumps(r["Properties"])
    ]
    assert len(ui_secrets) == 1
    assert "GenerateSecretString" not in ui_secrets[0]
    assert render(ui_secrets[0]["SecretString"]) == (
        f'{{"client_id":"${{{client_id}}}","client_secret":"${{{client_id}.ClientSecret}}"}}'
    )


def test_without_a_domain_the_vpc_stack_leaves_sign_in_off(sso_templates: dict[str, Template]) -> None:
    client = _ui_client(sso_templates[names.VPC_STACK])[1]["Properties"]
    assert client["AllowedOAuthFlowsUserPoolClient"] is False
    assert "CallbackURLs" not in client and "AllowedOAuthFlows" not in client


def test_gateway_registers_the_api_sign_in_urls_with_the_whole_client_config(
    sso_templates: dict[str, Template],
) -> None:
    vpc, gateway = sso_templates[names.VPC_STACK], sso_templates[names.GATEWAY_STACK]
    call = _registration(gateway)
    assert (call["service"], call["action"]) == ("CognitoIdentityServiceProvider", "UpdateUserPoolClient")
    parameters = call["parameters"]
    api = next(key for key in resources(gateway, "AWS::ApiGatewayV2::Api") if key.startswith("GatewayApi"))  # not IAM's
    origin = f"https://${{{api}}}.execute-api.${{AWS::Region}}.${{AWS::URLSuffix}}"
    assert parameters["CallbackURLs"] == [f"{origin}/callback"]
    assert parameters["LogoutURLs"] == [f"{origin}/"]
    assert parameters["AllowedOAuthFlows"] == ["code"] and parameters["AllowedOAuthFlowsUserPoolClient"] is True
    assert parameters["AllowedOAuthScopes"] == ["openid", "email", "profile"]
    # UpdateUserPoolClient resets what it is not sent: everything the VPC stack sets is sent as well.
    client = _ui_client(vpc)[1]["Properties"]
    for key, value in client.items():
        if key not in ("UserPoolId", "GenerateSecret", "AllowedOAuthFlowsUserPoolClient"):
            assert parameters[key] == value, key
    assert parameters["UserPoolId"].startswith("${MLflowVpcStack:") and parameters["ClientId"].startswith(
        "${MLflowVpcStack:"
    )
    # The response carries the client secret: neither logged nor handed back to CloudFormation.
    assert call["logApiResponseData"] is False and call["outputPaths"] == ["UserPoolClient.ClientId"]


def test_registration_may_update_that_pool_only(sso_templates: dict[str, Template]) -> None:
    gateway = sso_templates[names.GATEWAY_STACK]
    cognito = [s for s in policy_statements(gateway) if "cognito" in json.dumps(s["Action"])]
    assert len(cognito) == 1
    assert cognito[0]["Action"] == "cognito-idp:UpdateUserPoolClient"
    assert render(cognito[0]["Resource"]).startswith("${MLflowVpcStack:")


def test_with_a_domain_the_client_carries_the_domain_urls_and_nothing_registers_them(
    sso_domain: dict[str, Template],
) -> None:
    client = _ui_client(sso_domain[names.VPC_STACK])[1]["Properties"]
    assert client["CallbackURLs"] == [f"https://{DOMAIN}/callback"]
    assert client["LogoutURLs"] == [f"https://{DOMAIN}/"]
    assert client["AllowedOAuthFlows"] == ["code"] and client["AllowedOAuthFlowsUserPoolClient"] is True
    assert "UpdateUserPoolClient" not in json.dumps(sso_domain[names.GATEWAY_STACK])
    # The rest of the domain variant holds in sso mode too: HTTPS to the ALB, MLflow told its domain.
    vpc = sso_domain[names.VPC_STACK]
    listeners = resources(vpc, "AWS::ElasticLoadBalancingV2::Listener")
    assert {listener["Properties"]["Protocol"] for listener in listeners.values()} == {"HTTPS"}  # IAM's too
    assert _environment(_container(vpc, "mlflow"))["MLFLOW_PUBLIC_DOMAIN"] == DOMAIN
    assert "Custom::AWS" in json.dumps(sso_domain[names.GATEWAY_STACK])  # the CORS rule still is one


# --- the task: the contract's environment and secrets ---------------------------------


def test_mlflow_container_gets_the_oidc_settings(sso_templates: dict[str, Template]) -> None:
    vpc = sso_templates[names.VPC_STACK]
    mlflow = _container(vpc, "mlflow")
    environment = _environment(mlflow)
    pool = only(vpc, POOL)[0]
    assert environment["MLFLOW_AUTH_MODE"] == "sso"
    assert render(environment["OIDC_DISCOVERY_URL"]) == f"${{{pool}.ProviderURL}}/.well-known/openid-configuration"
    assert environment["OIDC_ADMIN_GROUP"] == "mlflow-admins" and "OIDC_ALLOWED_GROUP" not in environment
    assert environment["OIDC_GROUPS_CLAIM"] == "cognito:groups"
    assert environment["MLFLOW_AUTH_DEFAULT_PERMISSION"] == "READ"
    ui_secret = next(k for k, r in resources(vpc, SECRET).items() if "client_id" in json.dumps(r))
    session_key = next(k for k in resources(vpc, SECRET) if k.startswith("SessionKey"))
    secrets = _secrets(mlflow)
    assert secrets["OIDC_CLIENT_ID"] == f"${{{ui_secret}}}:client_id::"
    assert secrets["OIDC_CLIENT_SECRET"] == f"${{{ui_secret}}}:client_secret::"
    assert secrets["MLFLOW_FLASK_SERVER_SECRET_KEY"] == f"${{{session_key}}}"
    assert not {"MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD"} & set(secrets)
    # No redirect URI: the server derives it from the public host nginx passes.
    assert not any("REDIRECT" in name for name in environment)


def test_nginx_checks_nothing_and_holds_no_credential_in_sso_mode(sso_templates: dict[str, Template]) -> None:
    nginx = _container(sso_templates[names.VPC_STACK], "nginx")
    assert _environment(nginx)["MLFLOW_AUTH_MODE"] == "sso"
    assert "Secrets" not in nginx


def test_only_the_execution_role_reads_the_client_secret(sso_templates: dict[str, Template]) -> None:
    vpc = sso_templates[names.VPC_STACK]
    ui_secret = next(k for k, r in resources(vpc, SECRET).items() if "client_id" in json.dumps(r))
    readers = []
    for logical_id, policy in resources(vpc, "AWS::IAM::Policy").items():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if ui_secret in json.dumps(statement["Resource"]):
                readers.append((logical_id, statement["Action"]))
    assert len(readers) == 1
    logical_id, actions = readers[0]
    assert "ExecutionRole" in logical_id
    assert set(actions) == {"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"}


def test_outputs_say_where_tokens_come_from(sso_templates: dict[str, Template]) -> None:
    outputs = sso_templates[names.VPC_STACK]["Outputs"]
    assert render(outputs[names.OUTPUT_TOKEN_URL]["Value"]).endswith(".amazoncognito.com/oauth2/token")
    assert outputs[names.OUTPUT_API_SCOPE]["Value"] == "mlflow/api"
    assert ref_id(outputs[names.OUTPUT_USER_POOL_ID]["Value"]) == only(sso_templates[names.VPC_STACK], POOL)[0]


# --- Studio profiles: one client-credentials client each -----------------------------


def test_each_profile_gets_its_own_client_credentials_client_the_tasks_know(
    sso_templates: dict[str, Template],
) -> None:
    vpc = sso_templates[names.VPC_STACK]
    clients = {r["Properties"]["ClientName"]: (k, r["Properties"]) for k, r in resources(vpc, CLIENT).items()}
    assert set(clients) == {"mlflow-ui", "studio-alice", "studio-bob"}
    for profile in ("alice", "bob"):
        client = clients[f"studio-{profile}"][1]
        assert client["GenerateSecret"] is True
        assert client["AllowedOAuthFlows"] == ["client_credentials"] and client["AllowedOAuthFlowsUserPoolClient"]
        assert client["AllowedOAuthScopes"] == ["mlflow/api"]
    # The server creates an MLflow user for each of these clients (their tokens name no person).
    machine_clients = render(_environment(_container(vpc, "mlflow"))["OIDC_MACHINE_CLIENTS"])
    assert machine_clients == "${%s},${%s}" % (clients["studio-alice"][0], clients["studio-bob"][0])
    assert not resources(sso_templates[names.STUDIO_STACK], CLIENT)


def test_each_profile_secret_holds_its_client_by_reference(sso_templates: dict[str, Template]) -> None:
    studio = sso_templates[names.STUDIO_STACK]
    for profile in ("alice", "bob"):
        secret_id, secret = next(
            (k, r["Properties"])
            for k, r in resources(studio, SECRET).items()
            if r["Properties"]["Name"] == f"mlflow-server-credentials/users/{profile}/oauth"
        )
        value = render(secret["SecretString"])
        assert re.fullmatch(
            rf'\{{"client_id":"\$\{{MLflowVpcStack:PublishOutputRefStudioClient{profile}[0-9A-F]+\}}",'
            rf'"client_secret":"\$\{{CognitoClientSecretsLookup{profile}[0-9A-F]+\.UserPoolClient\.ClientSecret\}}",'
            r'"token_url":"https://\$\{MLflowVpcStack:[^}]+\}\.auth\.\$\{AWS::Region\}\.amazoncognito\.com/oauth2/token",'
            r'"scope":"mlflow/api"\}',
            value,
        ), value
        _assert_only_the_profile_reads(studio, secret_id, profile)


def test_client_secret_lookup_returns_only_the_secret_and_logs_nothing(sso_templates: dict[str, Template]) -> None:
    studio = sso_templates[names.STUDIO_STACK]
    lookups = [r for r in resources(studio, "Custom::AWS").values() if "DescribeUserPoolClient" in json.dumps(r)]
    assert len(lookups) == 2
    for lookup in lookups:
        call = json.loads(render(lookup["Properties"]["Create"]))
        assert call["outputPaths"] == ["UserPoolClient.ClientSecret"] and call["logApiResponseData"] is False
        assert call["parameters"]["ClientId"].startswith("${MLflowVpcStack:PublishOutputRefStudioClient")
    cognito = [s for s in policy_statements(studio) if "cognito" in json.dumps(statement_actions(s))]
    assert {s["Action"] for s in cognito} == {"cognito-idp:DescribeUserPoolClient"}
    pool = only(sso_templates[names.VPC_STACK], POOL)[0]
    assert len(cognito) == 2 and all(
        render(s["Resource"]).startswith(f"${{MLflowVpcStack:PublishOutputFnGetAtt{pool}Arn") for s in cognito
    )


def _assert_only_the_profile_reads(studio: Template, secret_id: str, profile: str) -> None:
    """The secret's resource policy denies all but the profile's two roles; its execution role's tag names it."""
    prefix = f"User{profile.replace('-', '')}"
    policy = next(
        r["Properties"]["ResourcePolicy"]
        for r in resources(studio, "AWS::SecretsManager::ResourcePolicy").values()
        if ref_id(r["Properties"]["SecretId"]) == secret_id
    )
    (deny,) = policy["Statement"]
    assert deny["Effect"] == "Deny" and deny["Action"] == "secretsmanager:GetSecretValue"
    assert deny["Principal"] == {"AWS": "*"}
    allowed = sorted(ref_id(arn) for arn in deny["Condition"]["StringNotEquals"]["aws:PrincipalArn"])
    assert len(allowed) == 2
    assert allowed[0].startswith(f"{prefix}ExecutionRole") and allowed[1].startswith(f"{prefix}TrainingRole")
    role = studio["Resources"][allowed[0]]
    tags = {t["Key"]: t["Value"] for t in role["Properties"]["Tags"]}
    assert tags[names.ROLE_TAG_CREDENTIALS_SECRET] == f"mlflow-server-credentials/users/{profile}/oauth"


def _client_reads(studio: Template, profile: str, role: str) -> list[dict[str, Any]]:
    policies = [
        r["Properties"]["PolicyDocument"]["Statement"]
        for k, r in resources(studio, "AWS::IAM::Policy").items()
        if k.startswith(f"User{profile}{role}")
    ]
    return [s for statements in policies for s in statements if s.get("Sid") == "ReadMlflowCredentials"]


@pytest.mark.parametrize(
    "context",
    # IAM sign-in off; and an external provider, whose profile clients are unknown at synth, by default.
    [{**SSO_CONTEXT, "iam_sign_in": "false"}, {**EXTERNAL_ISSUER_CONTEXT, "user_profiles": "alice,bob"}],
)
def test_without_iam_sign_in_studio_roles_read_their_own_client_only(context: dict[str, str]) -> None:
    studio = synth_templates(**context)[names.STUDIO_STACK]
    secrets = {r["Properties"]["Name"]: k for k, r in resources(studio, SECRET).items()}
    assert not resources(studio, "AWS::SSM::Parameter")
    for profile in ("alice", "bob"):
        for role in ("ExecutionRoleWorkflowPolicy", "TrainingPolicy"):
            reads = _client_reads(studio, profile, role)
            assert len(reads) == 1, (profile, role)
            assert ref_id(reads[0]["Resource"]) == secrets[f"mlflow-server-credentials/users/{profile}/oauth"]


def test_with_iam_sign_in_studio_roles_sign_in_as_their_clients_machine_user(
    sso_templates: dict[str, Template],
) -> None:
    studio = sso_templates[names.STUDIO_STACK]
    parameters = resources(studio, "AWS::SSM::Parameter")
    for profile in ("alice", "bob"):
        for role in ("ExecutionRoleWorkflowPolicy", "TrainingPolicy"):
            assert _client_reads(studio, profile, role) == [], (profile, role)
        (value,) = [
            r["Properties"]["Value"] for k, r in parameters.items() if k.startswith(f"User{profile}IamPrincipal")
        ]
        parts = value["Fn::Join"][1]
        # {"user": <the profile's Cognito app client id, its machine user>, "roles": [execution, training]}
        assert parts[0] == '{"user":"'
        assert parts[1]["Fn::GetStackOutput"]["OutputName"].startswith(f"PublishOutputRefStudioClient{profile}")
        roles = [part["Fn::GetAtt"][0] for part in parts if isinstance(part, dict) and "Fn::GetAtt" in part]
        assert [role.removeprefix(f"User{profile}")[:12] for role in roles] == ["ExecutionRol", "TrainingRole"]


# --- an external issuer ------------------------------------------------------------


def test_external_issuer_creates_nothing_at_cognito(external: dict[str, Template]) -> None:
    for template in external.values():
        assert not [r for r in template["Resources"].values() if r["Type"].startswith("AWS::Cognito::")]
    assert "UpdateUserPoolClient" not in json.dumps(external[names.GATEWAY_STACK])
    assert names.OUTPUT_TOKEN_URL not in external[names.VPC_STACK]["Outputs"]


def test_external_issuer_client_comes_from_the_named_secret(external: dict[str, Template]) -> None:
    vpc = external[names.VPC_STACK]
    mlflow = _container(vpc, "mlflow")
    assert _environment(mlflow)["OIDC_DISCOVERY_URL"] == EXTERNAL_ISSUER_CONTEXT["oidc_discovery_url"]
    assert "OIDC_GROUPS_CLAIM" not in _environment(mlflow)
    assert "OIDC_MACHINE_CLIENTS" not in _environment(mlflow)  # none configured; the profiles' ids are the admin's
    arn = "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:team/mlflow-oidc"
    secrets = _secrets(mlflow)
    assert secrets["OIDC_CLIENT_ID"] == f"{arn}:client_id::"
    assert secrets["OIDC_CLIENT_SECRET"] == f"{arn}:client_secret::"
    # Imported by name: the stack neither creates nor writes it ...
    assert not any("team/mlflow-oidc" in json.dumps(r) for r in resources(vpc, SECRET).values())
    # ... and only the execution role may read it (any version suffix Secrets Manager appended).
    reads = [
        (k, s)
        for k, r in resources(vpc, "AWS::IAM::Policy").items()
        for s in r["Properties"]["PolicyDocument"]["Statement"]
        if "team/mlflow-oidc" in json.dumps(s)
    ]
    assert len(reads) == 1 and "ExecutionRole" in reads[0][0]
    assert f"{arn}-??????" in [render(resource) for resource in reads[0][1]["Resource"]]


def test_external_issuer_profile_secret_is_an_empty_form_kept_across_deploys(external: dict[str, Template]) -> None:
    studio = external[names.STUDIO_STACK]
    assert not resources(studio, CLIENT)
    secret_id, secret = next(
        (k, r)
        for k, r in resources(studio, SECRET).items()
        if r["Properties"]["Name"] == "mlflow-server-credentials/users/mlflow-user/oauth"
    )
    assert json.loads(secret["Properties"]["SecretString"]) == {
        "client_id": "",
        "client_secret": "",
        "token_url": "",
        "scope": "",
    }
    assert secret["DeletionPolicy"] == "Retain"  # what the administrator filled in is kept
    _assert_only_the_profile_reads(studio, secret_id, "mlflow-user")


# --- nothing secret in any template ---------------------------------------------------


@pytest.mark.parametrize("variant", ["cognito", "external", "domain"])
def test_no_secret_value_in_any_template(
    variant: str,
    sso_templates: dict[str, Template],
    external: dict[str, Template],
    sso_domain: dict[str, Template],
) -> None:
    """Secrets are generated or copied by reference: no literal secret string anywhere."""
    templates = {"cognito": sso_templates, "external": external, "domain": sso_domain}[variant]
    for template in templates.values():
        for secret in resources(template, SECRET).values():
            value = secret["Properties"].get("SecretString")
            if value is None:
                assert "GenerateSecretString" in secret["Properties"]
            elif isinstance(value, str):
                assert set(json.loads(value).values()) == {""}, value
            else:
                # Only Ref / GetAtt / stack outputs in the value, no literal besides field names and URLs.
                literals = "".join(p for p in value["Fn::Join"][1] if isinstance(p, str))
                assert re.fullmatch(r'[{}",:a-z_/.A-Z0-9-]*', literals), literals
                assert not re.search(r"[A-Za-z0-9]{20,}", literals), literals
        text = json.dumps(template)
        assert 'ClientSecret":' not in text.replace('"ClientSecret"]', "")  # only as a GetAtt attribute


def test_sso_variants_pass_aws_solutions_checks(
    sso_templates: dict[str, Template], external: dict[str, Template], sso_domain: dict[str, Template]
) -> None:
    # Synth raises ValidationFailed on any unacknowledged cdk-nag finding; these did synthesize.
    for templates in (sso_templates, external, sso_domain):
        assert set(templates) == set(names.ALL_STACKS)


def test_task_role_reads_no_secret(sso_templates: dict[str, Template]) -> None:
    statement = statement_by_sid(sso_templates[names.VPC_STACK], "ReadWriteArtifacts")
    task_policy = next(
        r
        for r in resources(sso_templates[names.VPC_STACK], "AWS::IAM::Policy").values()
        if statement in r["Properties"]["PolicyDocument"]["Statement"]
    )
    assert "secretsmanager" not in json.dumps(task_policy)


def test_registration_call_is_a_valid_update_user_pool_client_request(sso_templates: dict[str, Template]) -> None:
    """The call's parameters match Cognito's API model (botocore's), so a misspelt field fails here, not at deploy."""
    import botocore.session
    from botocore.validate import validate_parameters

    model = botocore.session.get_session().get_service_model("cognito-idp")
    shape = model.operation_model("UpdateUserPoolClient").input_shape
    parameters = _registration(sso_templates[names.GATEWAY_STACK])["parameters"]
    validate_parameters(parameters, shape)  # raises ParamValidationError on an unknown or mistyped field
    with pytest.raises(Exception, match="Unknown parameter"):
        validate_parameters({**parameters, "CallbackUrls": parameters["CallbackURLs"]}, shape)


def test_profile_clients_are_created_after_the_scope_they_ask_for(sso_templates: dict[str, Template]) -> None:
    vpc = sso_templates[names.VPC_STACK]
    server = only(vpc, "AWS::Cognito::UserPoolResourceServer")[0]
    for client in resources(vpc, CLIENT).values():
        if client["Properties"]["ClientName"].startswith("studio-"):
            assert server in client.get("DependsOn", []), client


def test_iam_sign_in_is_on_with_the_pool_and_off_with_an_external_provider(
    sso_templates: dict[str, Template], external: dict[str, Template]
) -> None:
    vpc = sso_templates[names.VPC_STACK]
    assert _environment(_container(vpc, "nginx"))["NGINX_IAM_LISTEN"] == str(names.NGINX_IAM_PORT)
    assert _environment(_container(vpc, "mlflow"))["MLFLOW_IAM_SIGN_IN"] == "true"
    assert names.OUTPUT_IAM_TRACKING_URL in sso_templates[names.GATEWAY_STACK]["Outputs"]
    assert "NGINX_IAM_LISTEN" not in _environment(_container(external[names.VPC_STACK], "nginx"))
    assert "MLFLOW_IAM_SIGN_IN" not in _environment(_container(external[names.VPC_STACK], "mlflow"))
    assert names.OUTPUT_IAM_TRACKING_URL not in external[names.GATEWAY_STACK].get("Outputs", {})
