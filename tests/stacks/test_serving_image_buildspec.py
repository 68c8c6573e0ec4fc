"""The serving image buildspec, run for real: MLflow's own CLI, moto for ECR/STS, a recording Docker stand-in.

There is no Docker engine here, so `docker` is a small fake that behaves like
one where it matters: it keeps a set of local images, `build` needs the
Dockerfile's FROM image locally (otherwise the real engine would pull it from
Docker Hub, which the fake records as a failure), and `push` needs the image.
`aws` is a fake CLI answering the two calls the build makes from moto.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from localrun.process import free_port
from stacks.components.serving_image_build import BASE_IMAGE_MIRROR
from stacks.mlflow_version import pinned_mlflow_version
from tests.stacks.helpers import Template, props

pytestmark = pytest.mark.integration  # a moto server and MLflow's own CLI

REGION = "us-east-1"
FAKE_DOCKER = """\
#!{python}
import json, os, pathlib, re, sys
state = pathlib.Path(os.environ["FAKE_DOCKER_STATE"])
images = set(json.loads(state.read_text())) if state.exists() else set()
log = pathlib.Path(os.environ["FAKE_DOCKER_LOG"])
args = sys.argv[1:]
with log.open("a") as out:
    out.write(json.dumps(args) + "\\n")
def fail(message):
    with log.open("a") as out:
        out.write(json.dumps(["FAILED", message]) + "\\n")
    sys.exit(message)
command = args[0]
if command == "version":
    print("27.3.1")
elif command == "pull":
    if not args[1].startswith("public.ecr.aws/"):
        fail("anonymous Docker Hub pull of " + args[1])
    images.add(args[1])
elif command == "tag":
    if args[1] not in images:
        fail("no local image " + args[1])
    images.add(args[2])
elif command == "build":
    dockerfile = pathlib.Path(args[args.index("-f") + 1]).read_text()
    (log.parent / "Dockerfile").write_text(dockerfile)
    base = re.search(r"^FROM (\\S+)", dockerfile, re.MULTILINE).group(1)
    if base not in images:
        fail("docker build would pull " + base + " from Docker Hub")
    images.add(args[args.index("-t") + 1])
elif command == "login":
    sys.stdin.read()
elif command == "push":
    if args[1] not in images:
        fail("no local image " + args[1])
else:
    fail("unexpected docker command " + command)
state.write_text(json.dumps(sorted(images)))
"""
FAKE_AWS = """\
#!{python}
import sys, boto3
args = sys.argv[1:]
if args[:2] == ["ecr", "get-login-password"]:
    print("token")
elif args[:2] == ["ecr", "describe-images"]:
    repository = args[args.index("--repository-name") + 1]
    tag = args[args.index("--image-ids") + 1].split("=", 1)[1]
    try:
        boto3.client("ecr").describe_images(repositoryName=repository, imageIds=[{{"imageTag": tag}}])
    except boto3.client("ecr").exceptions.ImageNotFoundException as error:
        sys.exit(f"An error occurred (ImageNotFoundException): {{error}}")
else:
    sys.exit("unexpected aws command " + " ".join(args))
"""


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture()
def build_env(tmp_path: Path, moto_endpoint: str, studio_template: Template) -> dict[str, str]:
    """The project's environment variables, fake docker/aws first on PATH, AWS APIs from moto."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, source in (("docker", FAKE_DOCKER), ("aws", FAKE_AWS)):
        tool = bin_dir / name
        tool.write_text(source.format(python=sys.executable))
        tool.chmod(0o755)
    variables = props(studio_template, "AWS::CodeBuild::Project")["Environment"]["EnvironmentVariables"]
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}/usr/bin:/bin",
        "HOME": str(tmp_path),
        "FAKE_DOCKER_STATE": str(tmp_path / "images.json"),
        "FAKE_DOCKER_LOG": str(tmp_path / "docker.log"),
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        **{v["Name"]: v["Value"] for v in variables},
    }
    ecr = boto3.client("ecr", region_name=REGION, endpoint_url=moto_endpoint,
                       aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip
    repository = env["REPOSITORY"]
    if repository in {r["repositoryName"] for r in ecr.describe_repositories()["repositories"]}:
        ecr.delete_repository(repositoryName=repository, force=True)
    ecr.create_repository(repositoryName=repository, imageTagMutability="IMMUTABLE")
    return env


def run_build_phase(studio_template: Template, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The build phase's commands in one shell, as CodeBuild runs them (a failing command fails the phase)."""
    buildspec = json.loads(props(studio_template, "AWS::CodeBuild::Project")["Source"]["BuildSpec"])
    script = "set -e\n" + "\n".join(buildspec["phases"]["build"]["commands"])
    return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=300)


def docker_calls(env: dict[str, str]) -> list[list[str]]:
    log = Path(env["FAKE_DOCKER_LOG"])
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_base_image_comes_from_ecr_public_never_docker_hub(studio_template: Template, build_env) -> None:
    done = run_build_phase(studio_template, build_env)
    calls = docker_calls(build_env)
    assert done.returncode == 0, done.stdout + done.stderr + json.dumps(calls)
    assert not [c for c in calls if c[0] == "FAILED"], calls
    version = pinned_mlflow_version()
    # MLflow's generated Dockerfile starts from Docker Hub's ubuntu image ...
    dockerfile = (Path(build_env["FAKE_DOCKER_LOG"]).parent / "Dockerfile").read_text()
    assert "FROM ubuntu:24.04" in dockerfile and f"mlflow=={version}" in dockerfile
    # ... which the buildspec pulls from ECR Public and tags locally before the build.
    mirror = f"{BASE_IMAGE_MIRROR}/ubuntu:24.04"
    commands = [c[0] for c in calls]
    assert ["pull", mirror] in calls and ["tag", mirror, "ubuntu:24.04"] in calls
    assert commands.index("pull") < commands.index("tag") < commands.index("build")
    assert sum(c[0] == "pull" for c in calls) == 1
    registry = f"123456789012.dkr.ecr.{REGION}.amazonaws.com"
    assert ["push", f"{registry}/mlflow-pyfunc:{version}"] in calls


def test_an_existing_tag_is_not_built_again(studio_template: Template, build_env) -> None:
    ecr = boto3.client("ecr", region_name=REGION, endpoint_url=build_env["AWS_ENDPOINT_URL"],
                       aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip
    manifest = textwrap.dedent("""\
        {"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
         "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 2,
                    "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"},
         "layers": []}""")
    ecr.put_image(repositoryName="mlflow-pyfunc", imageManifest=manifest, imageTag=pinned_mlflow_version())
    done = run_build_phase(studio_template, build_env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "already in ECR and its tag is immutable: nothing to build" in done.stdout
    assert docker_calls(build_env) == []
