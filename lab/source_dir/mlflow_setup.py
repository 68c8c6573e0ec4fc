"""Point MLflow at the deployed tracking server in one call.

A Studio notebook and a SageMaker training job both call `configure_mlflow()`
once: it finds the tracking URL (HttpGatewayStack output or SSM parameter),
reads the MLflow login from Secrets Manager and exports the three
`MLFLOW_TRACKING_*` variables MLflow's client reads. It lives in
`source_dir/` so the training job ships with it.

When the deployment publishes an IAM sign-in URL beside the tracking URL
(output IamTrackingUrl, parameter /mlflow/iam-tracking-url), the role the
code runs as is its login instead: MLflow's client signs every request with
SigV4 (MLFLOW_TRACKING_AWS_SIGV4) and no secret is read, so no password is in
the process or the training job. The server maps the role to its MLflow user.

Which secret holds the login is found without any setting: the role the code
runs as (a Studio profile's execution role or its training role) carries its
name in the tag `mlflow:credentials-secret`; without that tag (another role, a
laptop) the `CredentialsSecretName` output of MLflowVpcStack names the
server's login. In accounts mode each Studio profile has its own login.

In sso mode the profile's secret holds an OAuth2 app client instead
(`client_id`, `client_secret`, `token_url`, optional `scope`): the helper gets
an access token with the client-credentials grant (authlib, a maintained
OAuth client) and exports it as MLFLOW_TRACKING_TOKEN; MLflow's server knows
the profile as the user named by that client id. Tokens expire (Cognito: one
hour by default): call `configure_mlflow()` again for a fresh one.

The password, client secret and token are never printed, logged or put into
an exception message.
"""

from __future__ import annotations

import json
import os
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

# Names fixed by the CDK stacks (stacks/names.py; a test keeps them equal).
GATEWAY_STACK_NAME = "HttpGatewayStack"
VPC_STACK_NAME = "MLflowVpcStack"
TRACKING_URL_OUTPUT_KEY = "TrackingUrl"
CREDENTIALS_SECRET_OUTPUT_KEY = "CredentialsSecretName"  # noqa: S105 - an output's name
TRACKING_URL_PARAMETER = "/mlflow/tracking-url"
IAM_TRACKING_URL_OUTPUT_KEY = "IamTrackingUrl"
IAM_TRACKING_URL_PARAMETER = "/mlflow/iam-tracking-url"
ARTIFACT_BUCKET_PARAMETER = "/mlflow/artifact-bucket"
# The tag on the execution and training roles that names their MLflow login's secret.
CREDENTIALS_SECRET_TAG = "mlflow:credentials-secret"  # noqa: S105 - a tag's name
# The OAuth client sso mode needs; MLflow does not bring it, so the training job's
# requirements.txt lists it (sagemaker_steps.write_training_requirements). The
# range is the one the server's mlflow-oidc-auth plugin accepts.
OAUTH_CLIENT_REQUIREMENT = "Authlib>=1.8,<2"
# The signer MLflow's client loads for MLFLOW_TRACKING_AWS_SIGV4 (IAM sign-in); neither the
# Studio kernel nor the training image has it. The version is requirements-dev.txt's.
SIGV4_SIGNER_REQUIREMENT = "requests-auth-aws-sigv4==0.7"
# MLflow's auth app answers who the caller is (any signed-in user may ask).
CURRENT_USER_PATH = "/api/2.0/mlflow/users/current"

_ACCESS_DENIED_CODES = {
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "ExpiredToken",
    "ExpiredTokenException",
}


# The tracking server serves the artifacts; API Gateway in front of it carries
# at most 10 MB per request and waits at most 30 s. With these, MLflow's client
# moves every file of 5 MiB or more straight between itself and S3 through
# presigned URLs the server issues (uploads in parts of 8 MiB, downloads in
# ranges of 32 MiB, several at a time), and sends only smaller files through
# the API. Small upload parts keep all of the client's upload threads (two per
# CPU) busy to the end; 32 MiB parts left most of them idle for the last wave.
MIB = 1024 * 1024
ARTIFACT_TRANSFER_SETTINGS = {
    "MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD": "true",
    "MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD": "true",
    "MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE": str(5 * MIB),
    "MLFLOW_MULTIPART_DOWNLOAD_MINIMUM_FILE_SIZE": str(5 * MIB),
    "MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE": str(8 * MIB),
    "MLFLOW_MULTIPART_DOWNLOAD_CHUNK_SIZE": str(32 * MIB),
}


# IAM sign-in: the signer MLflow's client uses hashes a body held in memory but fails on
# the open file a proxied artifact upload streams (upstream issue 15051). So a signed client
# uploads every non-empty file through presigned URLs (a multipart upload of one part when it
# is small) and these win over values set before. Downloads go presigned at every size
# already once MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD is on. An empty file has no part to
# upload (the server hands out no URL for zero parts) and stays on the proxied upload, which
# signing_session's signer signs and MLflow's own refuses.
SIGNED_UPLOAD_SETTINGS = {
    "MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD": "true",
    "MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE": "1",
}


def artifact_transfer_settings(*, signed: bool = False) -> dict[str, str]:
    """MLflow client settings that keep artifact requests through the API under its limits.

    `signed`: those of a client with IAM sign-in, which sends no artifact body through the API.
    """
    return {**ARTIFACT_TRANSFER_SETTINGS, **(SIGNED_UPLOAD_SETTINGS if signed else {})}


class MlflowSetupError(RuntimeError):
    """Raised with one message that says what was looked for and what to check."""


@dataclass(frozen=True)
class MlflowConnection:
    """Where MLflow now points; `repr` and `str` leave the password out."""

    tracking_uri: str
    username: str
    region: str
    url_source: str
    password: str = field(repr=False)
    secret_name: str = ""
    secret_source: str = ""
    # sso mode: the bearer token (and no password).
    token: str = field(default="", repr=False)
    # IAM sign-in: the identity requests are signed as (and no password, token or secret).
    iam_caller: str = ""

    def __str__(self) -> str:
        if self.iam_caller:
            return (
                f"MLflow tracking URI {self.tracking_uri} (from {self.url_source}), IAM sign-in as "
                f"{self.iam_caller}: MLflow user {self.username!r}, no secret read"
            )
        how = "bearer token of app client" if self.token else "user"
        return (
            f"MLflow tracking URI {self.tracking_uri} (from {self.url_source}), "
            f"{how} {self.username!r} (secret {self.secret_name!r}, from {self.secret_source})"
        )


@dataclass(frozen=True)
class CallerRole:
    """The IAM role this process runs as, and its tags (empty if they may not be read)."""

    name: str
    arn: str
    tags: dict[str, str]


def resolve_region(region: str | None = None, session: boto3.session.Session | None = None) -> str:
    """Explicit region first, then AWS_REGION / AWS_DEFAULT_REGION, then the boto3 profile."""
    found = (
        region
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
        or (session or boto3.session.Session()).region_name
    )
    if not found:
        raise MlflowSetupError(
            "No AWS region: pass region=..., or set AWS_REGION to the region the MLflow stacks are deployed in."
        )
    return found


def _aws_error(exc: Exception, what: str, check: str) -> MlflowSetupError:
    """Turn a boto error into one message; access problems get their own hint."""
    if isinstance(exc, NoCredentialsError):
        return MlflowSetupError(
            f"No AWS credentials while reading {what}. Run this in SageMaker Studio or a training "
            "job with the MLflow execution role, or configure credentials (AWS_PROFILE, ...)."
        )
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in _ACCESS_DENIED_CODES or status == 403:
            return MlflowSetupError(
                f"Access denied reading {what} ({code}). Check that you run with the Studio "
                "execution role created by SageMakerStudioUserStack (or a role with the same "
                "permissions) and that its credentials are current."
            )
        return MlflowSetupError(f"Could not read {what} ({code}). {check}")
    return MlflowSetupError(f"Could not read {what} ({type(exc).__name__}). {check}")


def stack_outputs(session: boto3.session.Session, region: str, stack_name: str) -> dict[str, str]:
    """The outputs of a deployed stack by OutputKey."""
    what = f"CloudFormation stack {stack_name!r} in {region}"
    try:
        stacks = session.client("cloudformation", region_name=region).describe_stacks(StackName=stack_name)["Stacks"]
    except (BotoCoreError, ClientError) as exc:
        raise _aws_error(exc, what, "Check that the stacks are deployed (`make deploy`) in this region.") from exc
    return {o["OutputKey"]: o.get("OutputValue", "") for o in (stacks[0].get("Outputs") or [])}


def stack_output(session: boto3.session.Session, region: str, stack_name: str, output_key: str) -> str:
    """One output of a deployed stack, found by OutputKey."""
    what = f"CloudFormation stack {stack_name!r} in {region}"
    outputs = stack_outputs(session, region, stack_name)
    value = outputs.get(output_key, "").strip()
    if not value:
        raise MlflowSetupError(
            f"{what} has no output {output_key!r} (outputs: {sorted(outputs) or 'none'}). Check "
            "that the stack finished deploying and is the one from this project."
        )
    return value


def tracking_url_from_stack(
    session: boto3.session.Session,
    region: str,
    stack_name: str = GATEWAY_STACK_NAME,
    output_key: str = TRACKING_URL_OUTPUT_KEY,
) -> str:
    """The HTTP API URL from the gateway stack's outputs."""
    return stack_output(session, region, stack_name, output_key).rstrip("/")


def caller_arn(session: boto3.session.Session, region: str | None = None) -> str:
    """The ARN this session's credentials act as (sts:GetCallerIdentity), or a setup error saying so."""
    try:
        return str(session.client("sts", region_name=region).get_caller_identity()["Arn"])
    except (BotoCoreError, ClientError) as exc:
        raise _aws_error(exc, "the caller's identity (sts:GetCallerIdentity)", "Check the AWS credentials.") from exc


def caller_role(session: boto3.session.Session) -> CallerRole | None:
    """The role behind this session's credentials with its tags; None for an IAM user or root.

    A Studio notebook runs as its profile's execution role and a training job
    as the role passed to it: both may read themselves (iam:GetRole). A role
    that may not gets empty tags, so callers fall back to the stack outputs.
    """
    caller = caller_arn(session)
    # arn:aws:sts::<account>:assumed-role/<role name>/<session>
    parts = caller.split(":", 5)[-1].split("/")
    if parts[0] != "assumed-role" or len(parts) < 3:
        return None
    name = parts[1]
    account = caller.split(":")[4]
    partition = caller.split(":")[1]
    try:
        role = session.client("iam").get_role(RoleName=name)["Role"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code", "") not in _ACCESS_DENIED_CODES:
            raise _aws_error(exc, f"IAM role {name!r}", "Check the AWS credentials.") from exc
        return CallerRole(name=name, arn=f"arn:{partition}:iam::{account}:role/{name}", tags={})
    except BotoCoreError as exc:
        raise _aws_error(exc, f"IAM role {name!r}", "Check the AWS credentials.") from exc
    tags = {t["Key"]: t["Value"] for t in role.get("Tags") or []}
    return CallerRole(name=name, arn=role["Arn"], tags=tags)


def find_credentials_secret(
    session: boto3.session.Session, region: str, *, vpc_stack_name: str = VPC_STACK_NAME
) -> tuple[str, str]:
    """(secret name, where it came from): the caller role's tag, else MLflowVpcStack's output."""
    role = caller_role(session)
    if role is not None and role.tags.get(CREDENTIALS_SECRET_TAG):
        return role.tags[CREDENTIALS_SECRET_TAG], f"tag {CREDENTIALS_SECRET_TAG} of role {role.name}"
    try:
        name = stack_output(session, region, vpc_stack_name, CREDENTIALS_SECRET_OUTPUT_KEY)
    except MlflowSetupError as exc:
        who = f"role {role.name}" if role else "the caller (not an IAM role)"
        raise MlflowSetupError(
            f"No MLflow login found: {who} has no tag {CREDENTIALS_SECRET_TAG!r}, and {exc} "
            "Run as a Studio user profile of SageMakerStudioUserStack, or pass secret_name=..."
        ) from None
    return name, f"stack {vpc_stack_name} output {CREDENTIALS_SECRET_OUTPUT_KEY}"


def read_parameter(session: boto3.session.Session, region: str, name: str, *, missing_ok: bool = False) -> str:
    """One SSM string parameter, with a clear error when it is not there ("" if `missing_ok`)."""
    what = f"SSM parameter {name!r} in {region}"
    try:
        value = session.client("ssm", region_name=region).get_parameter(Name=name)["Parameter"]["Value"]
    except (BotoCoreError, ClientError) as exc:
        if missing_ok and isinstance(exc, ClientError) and exc.response["Error"]["Code"] == "ParameterNotFound":
            return ""
        raise _aws_error(exc, what, "Check that the stacks are deployed (`make deploy`) in this region.") from exc
    if not value.strip():
        raise MlflowSetupError(f"{what} is empty. Redeploy the stacks to restore it.")
    return value.strip()


def iam_tracking_url(
    session: boto3.session.Session,
    region: str,
    *,
    stack_name: str = GATEWAY_STACK_NAME,
    parameter_name: str | None = None,
) -> tuple[str, str] | None:
    """(URL, where it came from) of the deployment's IAM sign-in entry point; None when it has none.

    From the SSM parameter `parameter_name` when given, else from the gateway
    stack's output: the same place the caller reads the tracking URL from.
    """
    if parameter_name:
        url = read_parameter(session, region, parameter_name, missing_ok=True)
        source = f"SSM parameter {parameter_name}"
    else:
        url = stack_outputs(session, region, stack_name).get(IAM_TRACKING_URL_OUTPUT_KEY, "").strip()
        source = f"stack {stack_name} output {IAM_TRACKING_URL_OUTPUT_KEY}"
    return (url.rstrip("/"), source) if url else None


def current_user(session: boto3.session.Session, region: str, url: str) -> str:
    """The MLflow user the server maps this session's role to, asked with a SigV4-signed request.

    The same signer and service name MLflow's client uses, so a refusal here
    (the role maps to no user, the API does not allow it) shows before any run.
    """
    try:
        import requests
        from requests_auth_aws_sigv4 import AWSSigV4
    except ImportError:
        raise MlflowSetupError(
            f"IAM sign-in needs the request signer MLflow's client uses: pip install '{SIGV4_SIGNER_REQUIREMENT}'"
        ) from None
    try:
        response = requests.get(
            url + CURRENT_USER_PATH, auth=AWSSigV4("execute-api", session=session, region=region), timeout=30
        )
    except requests.RequestException as exc:
        raise MlflowSetupError(f"Could not reach the IAM sign-in at {url} ({type(exc).__name__}).") from None
    if response.status_code != 200:
        said = " ".join(response.text.split())[:300]
        raise MlflowSetupError(
            f"{url} refused IAM sign-in (HTTP {response.status_code}: {said}). The role must be a Studio "
            "profile's execution or training role, or be listed in the iam_principals setting."
        )
    try:
        return str(response.json()["user"]["username"])
    except (ValueError, KeyError, TypeError):
        raise MlflowSetupError(f"{url}{CURRENT_USER_PATH} did not name an MLflow user") from None


def sign_in_with_iam(
    session: boto3.session.Session, region: str, url: str, source: str, env: MutableMapping[str, str]
) -> MlflowConnection:
    """Point MLflow's client at the IAM URL with SigV4 signing: no password or token in `env`.

    MLflow's signer then takes its keys and region from `session`, the one
    checked here (`signing_session`); where that cannot be installed, from
    boto3's default chain and AWS_DEFAULT_REGION (not AWS_REGION) per request.
    """
    import signing_session  # the file beside this one; not needed by callers that only want the settings

    caller = caller_arn(session, region)
    username = current_user(session, region, url)
    signing_session.reuse(session, region)
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        env.pop(name, None)
    env["MLFLOW_TRACKING_URI"] = url
    env["MLFLOW_TRACKING_AWS_SIGV4"] = "true"
    env["AWS_DEFAULT_REGION"] = region
    for name, value in artifact_transfer_settings().items():
        env.setdefault(name, value)  # a value you set yourself wins...
    env.update(SIGNED_UPLOAD_SETTINGS)  # ...except where an upload would fail to sign
    return MlflowConnection(
        tracking_uri=url, username=username, region=region, url_source=source, password="", iam_caller=caller
    )


def is_app_client(login: dict[str, str]) -> bool:
    """An sso login (an app client that gets bearer tokens), not a username and password."""
    return "client_id" in login


def read_credentials(session: boto3.session.Session, region: str, secret_name: str) -> tuple[str, str]:
    """(username, password) from the secret's JSON `{"username": ..., "password": ...}`."""
    login = read_login(session, region, secret_name)
    if is_app_client(login):
        raise MlflowSetupError(f"Secrets Manager secret {secret_name!r} holds an app client, not a password")
    return login["username"], login["password"]


def read_login(session: boto3.session.Session, region: str, secret_name: str) -> dict[str, str]:
    """The secret's login: `username`/`password`, or (sso) `client_id`/`client_secret`/`token_url`[/`scope`]."""
    what = f"Secrets Manager secret {secret_name!r} in {region}"
    try:
        secret = session.client("secretsmanager", region_name=region).get_secret_value(SecretId=secret_name)
    except (BotoCoreError, ClientError) as exc:
        raise _aws_error(
            exc, what, "Check that MLflowVpcStack is deployed in this region and the name is right."
        ) from exc
    malformed = MlflowSetupError(
        f"{what} is malformed: expected a JSON object with non-empty string fields 'username' "
        "and 'password'. Check the secret's value in the Secrets Manager console."
    )
    raw = secret.get("SecretString")
    if not isinstance(raw, str):
        raise malformed
    try:
        data: Any = json.loads(raw)
    except ValueError:
        data = None  # the decoder's error holds the secret text: do not chain it
    if not isinstance(data, dict):
        raise malformed
    if "client_id" in data:
        fields = {key: data.get(key) for key in ("client_id", "client_secret", "token_url")}
        if not all(isinstance(value, str) and value for value in fields.values()):
            raise MlflowSetupError(
                f"{what} is malformed: an sso login needs non-empty string fields 'client_id', "
                "'client_secret' and 'token_url' (and optionally 'scope')."
            )
        if not str(fields["token_url"]).startswith(("https://", "http://127.0.0.1", "http://localhost")):
            raise MlflowSetupError(f"{what}: token_url must be an https URL")
        scope = data.get("scope")
        return {**fields, **({"scope": scope} if isinstance(scope, str) and scope else {})}  # type: ignore[dict-item]
    username, password = data.get("username"), data.get("password")
    if not (isinstance(username, str) and username and isinstance(password, str) and password):
        raise malformed
    return {"username": username, "password": password}


def client_credentials_token(login: dict[str, str]) -> str:
    """An access token for the login's app client (OAuth2 client-credentials grant)."""
    try:
        from authlib.common.errors import AuthlibBaseError
        from authlib.integrations.requests_client import OAuth2Session
    except ImportError:
        raise MlflowSetupError(
            f"The MLflow login is an app client (sso mode), which needs the OAuth client Authlib: "
            f"pip install '{OAUTH_CLIENT_REQUIREMENT}'"
        ) from None
    from requests import RequestException

    client = OAuth2Session(login["client_id"], login["client_secret"], scope=login.get("scope"))
    try:
        token = client.fetch_token(login["token_url"], grant_type="client_credentials", timeout=30)
    except (AuthlibBaseError, RequestException, ValueError) as exc:
        # The error names the problem (invalid_client, ...) but never the secret.
        reason = getattr(exc, "error", None) or type(exc).__name__
        raise MlflowSetupError(
            f"Could not get a token for app client {login['client_id']!r} from {login['token_url']} ({reason}). "
            "Check the client id and secret in the profile's secret."
        ) from None
    finally:
        client.close()
    access_token = token.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise MlflowSetupError(f"The token endpoint {login['token_url']} returned no access_token")
    return access_token


def configure_mlflow(
    region: str | None = None,
    *,
    stack_name: str = GATEWAY_STACK_NAME,
    output_key: str = TRACKING_URL_OUTPUT_KEY,
    tracking_url_parameter: str | None = None,
    secret_name: str | None = None,
    iam_sign_in: bool | None = None,
    iam_tracking_url_parameter: str = IAM_TRACKING_URL_PARAMETER,
    session: boto3.session.Session | None = None,
    environ: MutableMapping[str, str] | None = None,
) -> MlflowConnection:
    """Set MLFLOW_TRACKING_URI / _USERNAME / _PASSWORD (sso: _TOKEN; IAM sign-in:
    _AWS_SIGV4) from the deployed stacks, and the artifact transfer settings
    (`artifact_transfer_settings()`).

    The URL comes from the gateway stack's output, or from the SSM parameter
    when `tracking_url_parameter` is given (e.g. "/mlflow/tracking-url"), for
    roles that may read parameters but not stacks. IAM sign-in is used when
    the deployment publishes its URL there too (`iam_tracking_url_parameter`)
    and neither `iam_sign_in=False` nor a `secret_name` asks for a password;
    `iam_sign_in=True` requires it. Otherwise the login comes from
    `secret_name`, or when that is None from the secret this role is tagged
    with, else the one MLflowVpcStack names (see the module docstring).
    """
    session = session or boto3.session.Session()
    region = resolve_region(region, session)
    env = os.environ if environ is None else environ
    if iam_sign_in and secret_name:
        raise MlflowSetupError("iam_sign_in=True signs in with the role, not a secret: leave secret_name out")
    if iam_sign_in is not False and not secret_name:
        iam = iam_tracking_url(
            session,
            region,
            stack_name=stack_name,
            parameter_name=iam_tracking_url_parameter if tracking_url_parameter else None,
        )
        if iam is not None:
            return sign_in_with_iam(session, region, *iam, env)
        if iam_sign_in:
            where = (
                f"SSM parameter {iam_tracking_url_parameter}"
                if tracking_url_parameter
                else f"stack {stack_name} output {IAM_TRACKING_URL_OUTPUT_KEY}"
            )
            raise MlflowSetupError(
                f"iam_sign_in=True, but this deployment has no IAM sign-in URL ({where} is missing). "
                "It needs iam_sign_in on (auth_mode=accounts or sso); or leave iam_sign_in out to use the login secret."
            )
    if tracking_url_parameter:
        url = read_parameter(session, region, tracking_url_parameter).rstrip("/")
        source = f"SSM parameter {tracking_url_parameter}"
    else:
        url = tracking_url_from_stack(session, region, stack_name, output_key)
        source = f"stack {stack_name} output {output_key}"
    if secret_name:
        secret_source = "argument secret_name"  # noqa: S105 - where the name came from
    else:
        secret_name, secret_source = find_credentials_secret(session, region)
    login = read_login(session, region, secret_name)
    env["MLFLOW_TRACKING_URI"] = url
    token = ""
    if is_app_client(login):
        # sso: a bearer token; a leftover password must not be sent instead.
        token = client_credentials_token(login)
        username, password = login["client_id"], ""
        env["MLFLOW_TRACKING_TOKEN"] = token
        env.pop("MLFLOW_TRACKING_USERNAME", None)
        env.pop("MLFLOW_TRACKING_PASSWORD", None)
    else:
        username, password = login["username"], login["password"]
        env["MLFLOW_TRACKING_USERNAME"] = username
        env["MLFLOW_TRACKING_PASSWORD"] = password
        env.pop("MLFLOW_TRACKING_TOKEN", None)
    env.pop("MLFLOW_TRACKING_AWS_SIGV4", None)  # a signature would replace the login
    for name, value in artifact_transfer_settings().items():
        env.setdefault(name, value)  # a value you set yourself wins
    return MlflowConnection(
        tracking_uri=url,
        username=username,
        region=region,
        url_source=source,
        password=password,
        secret_name=secret_name,
        secret_source=secret_source,
        token=token,
    )


def artifact_bucket(
    region: str | None = None,
    *,
    parameter_name: str = ARTIFACT_BUCKET_PARAMETER,
    session: boto3.session.Session | None = None,
) -> str:
    """The MLflow artifact bucket, which also holds SageMaker job code and model data."""
    session = session or boto3.session.Session()
    return read_parameter(session, resolve_region(region, session), parameter_name)
