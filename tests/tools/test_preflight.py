"""`make preflight` / `make deploy` / `make destroy`: what a user without a working setup is told, in one line.

AWS is moto's server; Docker and the CDK CLI cannot run here, so a fake
`docker` answers `docker info` the way a running or stopped engine does, and
a fake `npx` records whether (and how) make called the CDK CLI.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from localrun.services import MotoServer
from tests.tools.conftest import ACCOUNT, REGION, ROOT, client, fake_command, run_from_root, tool_env

RUNNING_ENGINE = "echo 27.3.1\n"
STOPPED_ENGINE = (
    'echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. '
    'Is the docker daemon running?" >&2\nexit 1\n'
)


def _bootstrap(aws: MotoServer, version: str = "28") -> None:
    """What `cdk bootstrap` leaves: the CDKToolkit stack with its BootstrapVersion output."""
    template = {
        "Resources": {"StagingBucket": {"Type": "AWS::S3::Bucket"}},
        "Outputs": {"BootstrapVersion": {"Value": version}},
    }
    client(aws, "cloudformation").create_stack(StackName="CDKToolkit", TemplateBody=json.dumps(template))


def _ready(aws: MotoServer, tmp_path: Path) -> dict[str, str]:
    """The environment of a deployer whose account is bootstrapped and whose Docker engine runs."""
    _bootstrap(aws)
    fake_command(tmp_path, "docker", RUNNING_ENGINE)
    return tool_env(aws, [tmp_path])


def _preflight(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_from_root([sys.executable, "-m", "tools.preflight", *args], env)


def _problem_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert all(line.startswith("preflight: ") for line in lines), result.stderr
    return lines


@pytest.mark.integration
def test_a_ready_setup_passes_with_one_line(aws: MotoServer, tmp_path: Path) -> None:
    result = _preflight(_ready(aws, tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        f"preflight: ok (AWS account {ACCOUNT}, region {REGION}; Docker engine 27.3.1; CDK bootstrap version 28)\n"
    )


@pytest.mark.integration
def test_missing_credentials(aws: MotoServer, tmp_path: Path) -> None:
    _bootstrap(aws)
    fake_command(tmp_path, "docker", RUNNING_ENGINE)
    env = tool_env(None, [tmp_path], AWS_REGION=REGION, AWS_ENDPOINT_URL=aws.endpoint_url)
    (line,) = _problem_lines(_preflight(env))
    assert line.startswith("preflight: no AWS credentials found: run `aws configure`"), line


@pytest.mark.integration
def test_missing_region(aws: MotoServer, tmp_path: Path) -> None:
    fake_command(tmp_path, "docker", RUNNING_ENGINE)
    env = tool_env(aws, [tmp_path])
    del env["AWS_REGION"]
    (line,) = _problem_lines(_preflight(env))
    assert line.startswith("preflight: no AWS region is set: export AWS_REGION=<region>"), line


def test_unreachable_aws(tmp_path: Path) -> None:
    fake_command(tmp_path, "docker", RUNNING_ENGINE)
    env = tool_env(None, [tmp_path], AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    env.update(AWS_REGION=REGION, AWS_ENDPOINT_URL="http://127.0.0.1:9", AWS_MAX_ATTEMPTS="1")
    (line,) = _problem_lines(_preflight(env))
    assert line.startswith(f"preflight: cannot reach AWS in region {REGION} (") and "check the network" in line


@pytest.mark.integration
def test_docker_not_installed(aws: MotoServer, tmp_path: Path) -> None:
    _bootstrap(aws)
    env = tool_env(aws, [tmp_path], PATH=str(tmp_path))  # nothing called docker on PATH
    (line,) = _problem_lines(_preflight(env))
    assert line.startswith("preflight: `docker` is not installed: the CDK builds the two container images"), line


@pytest.mark.integration
def test_docker_engine_stopped(aws: MotoServer, tmp_path: Path) -> None:
    _bootstrap(aws)
    fake_command(tmp_path, "docker", STOPPED_ENGINE)
    (line,) = _problem_lines(_preflight(tool_env(aws, [tmp_path])))
    assert line == (
        "preflight: the Docker engine is not running (Cannot connect to the Docker daemon at "
        "unix:///var/run/docker.sock. Is the docker daemon running?): start it (Docker Desktop, or "
        "`sudo systemctl start docker`) and retry"
    )


@pytest.mark.integration
def test_cdk_docker_replaces_docker_like_the_cdk_does(aws: MotoServer, tmp_path: Path) -> None:
    _bootstrap(aws)
    fake_command(tmp_path, "docker", STOPPED_ENGINE)
    fake_command(tmp_path, "podman", "echo 5.2.0\n")
    result = _preflight(tool_env(aws, [tmp_path], CDK_DOCKER="podman"))
    assert result.returncode == 0 and "Docker engine 5.2.0" in result.stdout, result.stderr


@pytest.mark.integration
def test_account_not_bootstrapped(aws: MotoServer, tmp_path: Path) -> None:
    fake_command(tmp_path, "docker", RUNNING_ENGINE)
    (line,) = _problem_lines(_preflight(tool_env(aws, [tmp_path])))
    assert line == (
        f"preflight: the CDK is not bootstrapped in account {ACCOUNT}, region {REGION} (no stack CDKToolkit): "
        f"run `npx cdk bootstrap aws://{ACCOUNT}/{REGION}` once, then retry"
    )


@pytest.mark.integration
def test_bootstrap_too_old(aws: MotoServer, tmp_path: Path) -> None:
    _bootstrap(aws, version="5")
    fake_command(tmp_path, "docker", RUNNING_ENGINE)
    (line,) = _problem_lines(_preflight(tool_env(aws, [tmp_path])))
    assert "is version 5, these stacks need 6 or later" in line
    assert line.endswith(f"run `npx cdk bootstrap aws://{ACCOUNT}/{REGION}` to upgrade it")


@pytest.mark.integration
def test_every_problem_is_reported_at_once(aws: MotoServer, tmp_path: Path) -> None:
    fake_command(tmp_path, "docker", STOPPED_ENGINE)
    lines = _problem_lines(_preflight(tool_env(aws, [tmp_path])))
    assert [line.split(":")[1].strip().split()[0] for line in lines] == ["the", "the"]
    assert "Docker engine is not running" in lines[0] and "not bootstrapped" in lines[1]


@pytest.mark.integration
def test_only_credentials_skips_docker_and_bootstrap(aws: MotoServer, tmp_path: Path) -> None:
    fake_command(tmp_path, "docker", STOPPED_ENGINE)
    result = _preflight(tool_env(aws, [tmp_path]), "--only", "credentials")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"preflight: ok (AWS account {ACCOUNT}, region {REGION})\n"


# --- the Makefile targets ------------------------------------------------------


def _make(
    target: str, env: dict[str, str], *args: str, stdin: int | None = subprocess.DEVNULL
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), target, *args],
        env=env,
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture
def fake_cli(tmp_path: Path) -> tuple[Path, Path]:
    """A bin directory with a fake `npx` that records its arguments, and the record."""
    record = tmp_path / "npx-calls"
    fake_command(tmp_path / "bin", "npx", f'echo "$*" >> "{record}"\n')
    return tmp_path / "bin", record


def test_make_deploy_stops_before_the_cdk_cli_when_preflight_fails(fake_cli: tuple[Path, Path]) -> None:
    bin_dir, record = fake_cli
    fake_command(bin_dir, "docker", RUNNING_ENGINE)
    result = _make("deploy", tool_env(None, [bin_dir], AWS_REGION=REGION))
    assert result.returncode != 0
    assert "preflight: no AWS credentials found" in result.stderr
    assert not record.exists(), "the CDK CLI ran although the preflight failed"


@pytest.mark.integration
def test_make_deploy_runs_the_cdk_cli_after_a_passing_preflight(aws: MotoServer, fake_cli: tuple[Path, Path]) -> None:
    bin_dir, record = fake_cli
    _bootstrap(aws)
    fake_command(bin_dir, "docker", RUNNING_ENGINE)
    result = _make("deploy", tool_env(aws, [bin_dir]))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "preflight: ok" in result.stdout
    assert record.read_text().splitlines() == ["cdk deploy --all"]


@pytest.mark.integration
def test_make_destroy_without_a_terminal_says_how_to_confirm(aws: MotoServer, fake_cli: tuple[Path, Path]) -> None:
    bin_dir, record = fake_cli
    result = _make("destroy", tool_env(aws, [bin_dir]))
    assert result.returncode != 0
    assert "make destroy: no terminal to confirm on; to delete the stacks without a question, run: " \
        "make destroy FORCE=1" in result.stderr  # fmt: skip
    assert not record.exists()


@pytest.mark.integration
def test_make_destroy_force_confirms_in_advance(aws: MotoServer, fake_cli: tuple[Path, Path]) -> None:
    bin_dir, record = fake_cli
    result = _make("destroy", tool_env(aws, [bin_dir]), "FORCE=1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert record.read_text().splitlines() == ["cdk destroy --all --force"]


def test_make_destroy_checks_credentials_first(fake_cli: tuple[Path, Path]) -> None:
    bin_dir, record = fake_cli
    result = _make("destroy", tool_env(None, [bin_dir], AWS_REGION=REGION), "FORCE=1")
    assert result.returncode != 0 and "preflight: no AWS credentials found" in result.stderr
    assert not record.exists()


# --- sso mode with an external issuer: its client secret ------------------------------

EXTERNAL = [
    "-c", "auth_mode=sso", "-c", "oidc_provider=external",
    "-c", "oidc_discovery_url=https://login.example.com/.well-known/openid-configuration",
    "-c", "oidc_client_secret_name=team/mlflow-oidc",
]  # fmt: skip


@pytest.mark.integration
def test_external_issuer_secret_must_exist_and_hold_the_client(aws: MotoServer, tmp_path: Path) -> None:
    env = _ready(aws, tmp_path)
    where = f"in account {ACCOUNT}, region {REGION}"

    assert _problem_lines(_preflight(env, *EXTERNAL)) == [
        f"preflight: the secret team/mlflow-oidc (oidc_client_secret_name) does not exist {where}: create it "
        "with your provider's client_id and client_secret (docs/auth-modes.md, Single sign-on) and retry"
    ]

    secrets = client(aws, "secretsmanager")
    secrets.create_secret(Name="team/mlflow-oidc", SecretString=json.dumps({"client_id": "mlflow-ui"}))
    result = _preflight(env, *EXTERNAL)
    assert _problem_lines(result) == [
        "preflight: the secret team/mlflow-oidc (oidc_client_secret_name) has no client_secret: store "
        '{"client_id": ..., "client_secret": ...} in it (docs/auth-modes.md, Single sign-on)'
    ]

    value = "s3cret-value-never-printed"
    secrets.put_secret_value(
        SecretId="team/mlflow-oidc", SecretString=json.dumps({"client_id": "mlflow-ui", "client_secret": value})
    )
    result = _preflight(env, *EXTERNAL)
    assert result.returncode == 0, result.stderr
    assert "OIDC client secret team/mlflow-oidc" in result.stdout
    assert value not in result.stdout + result.stderr
    # Without sso (the keys may stay in cdk.json), the secret is not looked at.
    secrets.delete_secret(SecretId="team/mlflow-oidc", ForceDeleteWithoutRecovery=True)
    assert _preflight(env, *EXTERNAL, "-c", "auth_mode=accounts").returncode == 0


@pytest.mark.integration
def test_make_preflight_passes_the_settings_on(aws: MotoServer, tmp_path: Path) -> None:
    result = _make("preflight", _ready(aws, tmp_path), f"CDK_ARGS={' '.join(EXTERNAL)}")
    assert result.returncode != 0
    assert "preflight: the secret team/mlflow-oidc (oidc_client_secret_name) does not exist" in result.stderr


FEDERATION = [
    "-c", "auth_mode=sso",
    "-c", 'cognito_federation=[{"name": "Google", "type": "google", "client_id": "1-a.apps.googleusercontent.com",'
    ' "client_secret_name": "team/google-oauth"}, {"name": "CorpSAML", "type": "saml",'
    ' "metadata_url": "https://idp.example.com/saml/metadata.xml"}]',
]  # fmt: skip


@pytest.mark.integration
def test_federated_providers_secrets_must_exist_and_hold_the_client_secret(aws: MotoServer, tmp_path: Path) -> None:
    env = _ready(aws, tmp_path)
    where = f"in account {ACCOUNT}, region {REGION}"

    # SAML has no client secret: only Google's is looked for.
    assert _problem_lines(_preflight(env, *FEDERATION)) == [
        f"preflight: the secret team/google-oauth (cognito_federation provider Google) does not exist {where}: "
        "create it with your provider's client_secret (docs/auth-modes.md, Federating Google or your company's IdP)"
        " and retry"
    ]
    secrets = client(aws, "secretsmanager")
    secrets.create_secret(Name="team/google-oauth", SecretString="plain text")
    assert _problem_lines(_preflight(env, *FEDERATION)) == [
        "preflight: the secret team/google-oauth (cognito_federation provider Google) is not a JSON object: "
        'store {"client_secret": ...} in it (docs/auth-modes.md, Federating Google or your company\'s IdP)'
    ]
    value = "g00gle-s3cret-never-printed"
    secrets.put_secret_value(SecretId="team/google-oauth", SecretString=json.dumps({"client_secret": value}))
    result = _preflight(env, *FEDERATION)
    assert result.returncode == 0, result.stderr
    assert "Google client secret team/google-oauth" in result.stdout
    assert value not in result.stdout + result.stderr
    # Outside sso mode the setting is refused as synth refuses it (preflight parses with the same model),
    # and its secrets are not looked at.
    secrets.delete_secret(SecretId="team/google-oauth", ForceDeleteWithoutRecovery=True)
    result = _preflight(env, *FEDERATION, "-c", "auth_mode=accounts")
    assert result.returncode == 1
    assert (
        "preflight: Invalid configuration: cognito_federation=['Google', 'CorpSAML'] is only used with" in result.stderr
    )
    assert "team/google-oauth" not in result.stderr
