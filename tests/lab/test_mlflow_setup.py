"""lab/source_dir/mlflow_setup.py against moto in-process: the happy paths and every error."""

from __future__ import annotations

import json
import logging
import os

import boto3
import mlflow_setup
import pytest
from mlflow_setup import MlflowSetupError, configure_mlflow
from moto.core import set_initial_no_auth_action_count

from tests.lab.conftest import REGION

URL = "https://abc123.execute-api.eu-west-1.amazonaws.com"
PASSWORD = "pw-Sentinel-7f3a9c"  # must never show up anywhere
STACK_TEMPLATE = {
    "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
    "Outputs": {"TrackingUrl": {"Value": URL + "/"}, "Other": {"Value": "x"}},
}
# Not the default name: nothing may assume it (issue 11).
SECRET_NAME = "team-a/mlflow-login"


def vpc_stack_template(secret_name: str = SECRET_NAME) -> dict:
    return {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {"CredentialsSecretName": {"Value": secret_name}},
    }


def deploy(session, *, template=STACK_TEMPLATE, secret: str | None = None) -> None:
    """What the stacks leave behind, as far as the helper reads it."""
    cfn = session.client("cloudformation")
    cfn.create_stack(StackName="HttpGatewayStack", TemplateBody=json.dumps(template))
    cfn.create_stack(StackName="MLflowVpcStack", TemplateBody=json.dumps(vpc_stack_template()))
    ssm = session.client("ssm")
    ssm.put_parameter(Name="/mlflow/tracking-url", Value=URL, Type="String")
    ssm.put_parameter(Name="/mlflow/artifact-bucket", Value="mlflow-artifacts-x", Type="String")
    value = secret if secret is not None else json.dumps({"username": "mlflow", "password": PASSWORD})
    session.client("secretsmanager").create_secret(Name=SECRET_NAME, SecretString=value)


def as_role(session, name: str, tags: dict[str, str] | None = None) -> boto3.session.Session:
    """A session of an assumed role (a Studio execution role or a training job's role)."""
    iam = session.client("iam")
    trust = {
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ]
    }
    role = iam.create_role(
        RoleName=name,
        AssumeRolePolicyDocument=json.dumps(trust),
        Tags=[{"Key": k, "Value": v} for k, v in (tags or {}).items()],
    )["Role"]
    creds = session.client("sts").assume_role(RoleArn=role["Arn"], RoleSessionName="SageMaker")["Credentials"]
    return boto3.session.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        region_name=REGION,
    )


def test_configures_from_stack_output_and_secret(aws, capsys, caplog):
    deploy(aws)
    env: dict[str, str] = {}
    with caplog.at_level(logging.DEBUG):
        conn = configure_mlflow(environ=env)
        print(conn, repr(conn))
    assert env == {
        "MLFLOW_TRACKING_URI": URL,  # trailing slash dropped
        "MLFLOW_TRACKING_USERNAME": "mlflow",
        "MLFLOW_TRACKING_PASSWORD": PASSWORD,
        **mlflow_setup.artifact_transfer_settings(),
    }
    assert (conn.region, conn.url_source) == (REGION, "stack HttpGatewayStack output TrackingUrl")
    # Not running as a role here: the secret MLflowVpcStack names.
    assert (conn.secret_name, conn.secret_source) == (SECRET_NAME, "stack MLflowVpcStack output CredentialsSecretName")
    out = capsys.readouterr()
    assert URL in out.out and PASSWORD not in out.out + out.err + own_logs(caplog)


def test_sets_process_environment_by_default(aws, monkeypatch):
    deploy(aws)
    # setenv first, so that monkeypatch restores each variable (absent ones removed) after the
    # test: configure_mlflow() writes them into this worker's environment, and later tests in the
    # same process (the tracing tests' bearer tokens) must not sign in with them.
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
                *mlflow_setup.artifact_transfer_settings()):  # fmt: skip
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)
    configure_mlflow()
    assert os.environ["MLFLOW_TRACKING_URI"] == URL
    assert os.environ["MLFLOW_TRACKING_PASSWORD"] == PASSWORD


def test_reads_url_from_ssm_parameter_when_asked(aws):
    deploy(aws, template={"Resources": STACK_TEMPLATE["Resources"]})  # stack has no output
    env: dict[str, str] = {}
    conn = configure_mlflow(tracking_url_parameter="/mlflow/tracking-url", environ=env)
    assert env["MLFLOW_TRACKING_URI"] == URL
    assert conn.url_source == "SSM parameter /mlflow/tracking-url"


def test_region_and_names_can_be_overridden(aws, monkeypatch):
    other = boto3.session.Session(region_name="us-east-2")
    other.client("cloudformation").create_stack(StackName="MyGateway", TemplateBody=json.dumps(STACK_TEMPLATE))
    other.client("secretsmanager").create_secret(
        Name="my-creds", SecretString=json.dumps({"username": "u2", "password": PASSWORD})
    )
    env: dict[str, str] = {}
    conn = configure_mlflow("us-east-2", stack_name="MyGateway", secret_name="my-creds", environ=env)
    assert (conn.region, env["MLFLOW_TRACKING_USERNAME"]) == ("us-east-2", "u2")


def test_the_secret_comes_from_the_callers_role_tag(aws):
    """A Studio profile (or its training role) reads its own login, whatever the stack output says."""
    deploy(aws)
    aws.client("secretsmanager").create_secret(
        Name="mlflow-server-credentials/users/alice/login",
        SecretString=json.dumps({"username": "alice", "password": PASSWORD}),
    )
    alice = as_role(aws, "alice-studio", {"mlflow:credentials-secret": "mlflow-server-credentials/users/alice/login"})
    env: dict[str, str] = {}
    conn = configure_mlflow(session=alice, environ=env)
    assert env["MLFLOW_TRACKING_USERNAME"] == "alice" and env["MLFLOW_TRACKING_PASSWORD"] == PASSWORD
    assert conn.secret_name == "mlflow-server-credentials/users/alice/login"
    assert conn.secret_source == "tag mlflow:credentials-secret of role alice-studio"
    assert "alice-studio" in str(conn) and PASSWORD not in str(conn) + repr(conn)


def test_a_role_without_the_tag_falls_back_to_the_stack_output(aws):
    deploy(aws)
    conn = configure_mlflow(session=as_role(aws, "someone-elses-role"), environ={})
    assert (conn.secret_name, conn.username) == (SECRET_NAME, "mlflow")
    assert conn.secret_source == "stack MLflowVpcStack output CredentialsSecretName"


@set_initial_no_auth_action_count(8)  # deploy (5), create_role, assume_role, put_role_policy
def test_a_role_that_may_not_read_itself_falls_back_to_the_stack_output(aws):
    """moto enforces IAM: GetRole on itself is denied, the stack output still names the secret."""
    deploy(aws)
    role = as_role(aws, "no-getrole", {"mlflow:credentials-secret": "never-read"})
    aws.client("iam").put_role_policy(
        RoleName="no-getrole",
        PolicyName="no-iam",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": ["cloudformation:*", "secretsmanager:*"], "Resource": "*"}],
            }
        ),
    )
    conn = configure_mlflow(session=role, environ={})
    assert (conn.secret_name, conn.username) == (SECRET_NAME, "mlflow")


def test_an_explicit_secret_name_wins(aws):
    deploy(aws)
    other = json.dumps({"username": "o", "password": "p"})
    aws.client("secretsmanager").create_secret(Name="other", SecretString=other)
    tagged = as_role(aws, "tagged", {"mlflow:credentials-secret": SECRET_NAME})
    conn = configure_mlflow(session=tagged, secret_name="other", environ={})
    assert (conn.username, conn.secret_source) == ("o", "argument secret_name")


def test_no_tag_and_no_stack_output_says_what_to_do(aws):
    aws.client("cloudformation").create_stack(StackName="HttpGatewayStack", TemplateBody=json.dumps(STACK_TEMPLATE))
    text = expect_error(session=as_role(aws, "untagged"))
    assert "No MLflow login found: role untagged has no tag 'mlflow:credentials-secret'" in text
    assert "'MLflowVpcStack'" in text and "secret_name=" in text and "\n" not in text


def test_helper_names_match_the_stacks():
    from stacks import names

    assert mlflow_setup.GATEWAY_STACK_NAME == names.GATEWAY_STACK
    assert mlflow_setup.VPC_STACK_NAME == names.VPC_STACK
    assert mlflow_setup.TRACKING_URL_OUTPUT_KEY == names.OUTPUT_TRACKING_URL
    assert mlflow_setup.CREDENTIALS_SECRET_OUTPUT_KEY == names.OUTPUT_CREDENTIALS_SECRET
    assert mlflow_setup.TRACKING_URL_PARAMETER == names.SSM_TRACKING_URL
    assert mlflow_setup.ARTIFACT_BUCKET_PARAMETER == names.SSM_ARTIFACT_BUCKET
    assert mlflow_setup.CREDENTIALS_SECRET_TAG == names.ROLE_TAG_CREDENTIALS_SECRET


def test_region_comes_from_aws_region_first(aws, monkeypatch):
    monkeypatch.setenv("AWS_REGION", "ap-south-1")
    assert mlflow_setup.resolve_region() == "ap-south-1"
    assert mlflow_setup.resolve_region("us-west-2") == "us-west-2"


def test_artifact_bucket_from_parameter(aws):
    deploy(aws)
    assert mlflow_setup.artifact_bucket() == "mlflow-artifacts-x"


def own_logs(caplog) -> str:
    """Log text of everything but botocore/urllib3, whose DEBUG wire logs show any response."""
    return "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith(("botocore", "urllib3")))


def expect_error(**kwargs) -> str:
    with pytest.raises(MlflowSetupError) as info:
        configure_mlflow(environ={}, **kwargs)
    text = str(info.value)
    assert PASSWORD not in text and PASSWORD not in repr(info.value.__cause__)
    return text


def test_missing_stack(aws):
    text = expect_error()
    assert "'HttpGatewayStack'" in text and REGION in text and "deployed" in text


def test_missing_output(aws):
    deploy(aws, template={"Resources": STACK_TEMPLATE["Resources"], "Outputs": {"Other": {"Value": "x"}}})
    text = expect_error()
    assert "no output 'TrackingUrl'" in text and "Other" in text


def test_missing_parameter(aws):
    text = expect_error(tracking_url_parameter="/mlflow/nope")
    assert "'/mlflow/nope'" in text and "ParameterNotFound" in text


def test_missing_secret(aws):
    cfn = aws.client("cloudformation")
    cfn.create_stack(StackName="HttpGatewayStack", TemplateBody=json.dumps(STACK_TEMPLATE))
    cfn.create_stack(StackName="MLflowVpcStack", TemplateBody=json.dumps(vpc_stack_template()))
    text = expect_error()
    assert f"'{SECRET_NAME}'" in text and "ResourceNotFoundException" in text


@pytest.mark.parametrize(
    "secret",
    [
        '{"username": "mlflow", "password": "' + PASSWORD,  # truncated JSON
        PASSWORD,  # plain text instead of JSON
        json.dumps([PASSWORD]),
        json.dumps({"user": "mlflow", "pass": PASSWORD}),
        json.dumps({"username": "", "password": PASSWORD}),
        json.dumps({"username": "mlflow", "password": 12345}),
    ],
    ids=["truncated", "plain", "list", "wrong-keys", "empty-user", "number"],
)
def test_malformed_secret(aws, secret, capsys, caplog):
    deploy(aws, secret=secret)
    with caplog.at_level(logging.DEBUG):
        text = expect_error()
    assert "malformed" in text and "'username'" in text and "'password'" in text
    out = capsys.readouterr()
    assert PASSWORD not in out.out + out.err + own_logs(caplog)


def test_binary_secret_is_malformed(aws):
    cfn = aws.client("cloudformation")
    cfn.create_stack(StackName="HttpGatewayStack", TemplateBody=json.dumps(STACK_TEMPLATE))
    cfn.create_stack(StackName="MLflowVpcStack", TemplateBody=json.dumps(vpc_stack_template()))
    aws.client("secretsmanager").create_secret(Name=SECRET_NAME, SecretBinary=PASSWORD.encode())
    assert "malformed" in expect_error()


def test_malformed_secret_error_chains_nothing(aws):
    """JSONDecodeError keeps the document it failed on: it must not ride along."""
    deploy(aws, secret='{"password": "' + PASSWORD)
    with pytest.raises(MlflowSetupError) as info:
        configure_mlflow(environ={})
    assert info.value.__cause__ is None and info.value.__context__ is None


@set_initial_no_auth_action_count(8)  # the setup calls below, then IAM is enforced
def test_access_denied_says_to_check_the_role(aws):
    """moto enforces IAM here: a user that may read the stack but not the secret."""
    deploy(aws)  # 5 calls
    iam = aws.client("iam")
    iam.create_user(UserName="studio")
    iam.put_user_policy(
        UserName="studio",
        PolicyName="stack-only",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "cloudformation:*", "Resource": "*"}],
            }
        ),
    )
    key = iam.create_access_key(UserName="studio")["AccessKey"]
    user = boto3.session.Session(
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
        region_name=REGION,
    )
    text = expect_error(session=user)
    assert f"Access denied reading Secrets Manager secret '{SECRET_NAME}'" in text
    assert "execution role" in text


def test_no_credentials(monkeypatch, tmp_path):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    text = expect_error(region=REGION)
    assert "No AWS credentials" in text


def test_no_region(monkeypatch, tmp_path):
    for var in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    assert "AWS_REGION" in expect_error()
