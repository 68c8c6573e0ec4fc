"""The CDK app through the pinned CLI, the way users run it: offline, no credentials."""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from stacks import names

ROOT = Path(__file__).resolve().parent.parent
CDK = ROOT / "node_modules" / ".bin" / "cdk"


def _offline_env() -> dict[str, str]:
    """No AWS credentials or config, and nothing that quiets jsii: what a user's shell has."""
    dropped = ("AWS_", "CDK_DEFAULT_ACCOUNT", "JSII_SILENCE_WARNING", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",  # cdk.json runs python3
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        CDK_DISABLE_CLI_TELEMETRY="true",
    )
    return env


def _cdk(*args: str) -> subprocess.CompletedProcess[str]:
    if not CDK.exists():
        pytest.fail("node_modules/.bin/cdk is missing: run `npm ci` (make test does)")
    return subprocess.run(
        [str(CDK), *args, "--no-notices"],
        cwd=ROOT,
        env=_offline_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_pinned_cli_version() -> None:
    pinned = json.loads((ROOT / "package.json").read_text())["devDependencies"]["aws-cdk"]
    assert pinned.startswith("2.1148.")
    result = _cdk("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(pinned)


@pytest.fixture(scope="module")
def cli_synth(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    """The README's `npx cdk synth`, run once: (its result, the cloud assembly it wrote)."""
    out = tmp_path_factory.mktemp("cli") / "cdk.out"
    return _cdk("synth", "--quiet", "--output", str(out)), out


def test_cli_synthesizes_exactly_the_four_stacks_offline(
    cli_synth: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    result, out = cli_synth
    assert result.returncode == 0, result.stdout + result.stderr
    listed = _cdk("list", "--app", str(out))  # the assembly just written: no second synth
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == list(names.ALL_STACKS)
    assert sorted(p.name for p in out.glob("*.template.json")) == sorted(
        f"{name}.template.json" for name in names.ALL_STACKS
    )
    assert not (ROOT / "cdk.context.json").exists(), "synth must not perform context lookups"


def test_synth_without_make_prints_no_banner_and_no_warning(
    cli_synth: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    """The app silences jsii's Node end-of-life banner itself; no option is ignored."""
    result, _ = cli_synth
    output = result.stdout + result.stderr
    assert "end-of-life" not in output and "b'" not in output, output
    assert "Unknown option" not in output, output
    # Where the CLI prints its status lines depends on the shell (CI=true sends them to stdout);
    # a template in the output would not.
    assert "AWSTemplateFormatVersion" not in output and "Resources:" not in output, "--quiet prints no template"


def _make_cdk_commands(*targets: str) -> dict[str, list[str]]:
    """The CDK CLI arguments each make target runs (`make -n`: print, do not run)."""
    commands = {}
    for target in targets:
        dry = subprocess.run(
            ["make", "-n", "--no-print-directory", "-C", str(ROOT), target, "FORCE=1"],
            env=_offline_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        (line,) = [line for line in dry.stdout.splitlines() if line.startswith("npx cdk ")]
        commands[target] = shlex.split(line)[2:]
    return commands


def test_make_targets_pass_only_options_the_pinned_cli_knows(
    cli_synth: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    """Each target's CLI command, run against the synthesized assembly offline (it stops at credentials)."""
    _, assembly = cli_synth
    commands = _make_cdk_commands("synth", "diff", "deploy", "destroy")
    assert commands["synth"][0] == "synth" and "--all" not in commands["synth"] + commands["diff"]
    for target, args in commands.items():
        result = _cdk(*args, "--app", str(assembly))
        output = result.stdout + result.stderr
        assert "Unknown option" not in output, f"make {target}: {output}"
        assert "end-of-life" not in output, f"make {target}: {output}"


def test_bad_configuration_stops_synth_with_one_clear_line(tmp_path: Path) -> None:
    result = _cdk("synth", "--quiet", "-c", "task_memory_mib=3000", "--output", str(tmp_path / "o"))
    assert result.returncode != 0
    assert "error: Invalid configuration: task_memory_mib=3000" in result.stderr
    assert "Traceback" not in result.stderr and "jsii" not in result.stderr.lower()


def test_app_py_exits_2_on_a_bad_value_without_a_traceback() -> None:
    env = _offline_env() | {"CDK_CONTEXT_JSON": json.dumps({"vpc_cidr": "10.0.0.0/33"}), "CDK_OUTDIR": "/nonexistent"}
    result = subprocess.run(
        [sys.executable, "app.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: Invalid configuration: vpc_cidr"), result.stderr
