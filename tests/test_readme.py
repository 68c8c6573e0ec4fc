"""The README and the pages of docs/ say what the code does: tables, commands and examples, links."""

import os
import re
import subprocess
from pathlib import Path

import pytest

from stacks.config import ProjectConfig

README = Path(__file__).resolve().parent.parent / "README.md"
DOCS = README.parent / "docs"


def doc(name: str) -> str:
    """The text of a documentation page: "README.md" or a page of docs/ ("operations.md")."""
    return (README if name == "README.md" else DOCS / name).read_text(encoding="utf-8")


def section(text: str, heading: str) -> str:
    """From the line `heading` (e.g. "## Alarms") up to the next heading of its level or above, code blocks skipped."""
    level = heading.index(" ")
    lines = text.splitlines(keepends=True)
    start = lines.index(heading + "\n")
    fenced = False
    for end in range(start + 1, len(lines)):
        fenced ^= lines[end].startswith("```")
        marks = len(lines[end]) - len(lines[end].lstrip("#"))
        if not fenced and 0 < marks <= level and lines[end][marks] == " ":
            break
    else:
        end = len(lines)
    return "".join(lines[start:end])


def _table_rows() -> dict[str, str]:
    rows = {}
    for line in doc("configuration.md").splitlines():
        match = re.match(r"^\| `([a-z0-9_]+)` \| `([^`]*)` \|", line)
        if match:
            rows[match.group(1)] = match.group(2)
    return rows


def test_each_section_has_its_own_table_in_declaration_order() -> None:
    tables: dict[str, list[str]] = {}
    section = None
    for line in doc("configuration.md").splitlines():
        heading = re.match(r"^### .* \(`([a-z]+)`\)$", line)
        if heading:
            section = heading.group(1)
            tables[section] = []
        elif line.startswith("#"):
            section = None
        elif section and (row := re.match(r"^\| `([a-z0-9_]+)` \|", line)):
            tables[section].append(row.group(1))
    expected = {name: list(model.model_fields) for name, model in ProjectConfig.sections().items()}
    assert tables == expected


def test_every_config_key_is_documented_with_its_default() -> None:
    rows = _table_rows()
    documented = ProjectConfig.documented()
    defaults = ProjectConfig()
    for name in documented:
        assert name in rows, f"docs/configuration.md's table lacks {name}"
        value = defaults.flat()[name]
        if isinstance(value, bool):  # as given with -c key=true
            shown = str(value).lower()
        elif isinstance(value, list):  # as given with -c key=a,b
            shown = ",".join(value) or '""'
        else:
            shown = '""' if value is None else (f"{value:g}" if isinstance(value, float) else str(value))
        assert rows[name] == shown, f"{name}: docs/configuration.md says {rows[name]!r}, code says {shown!r}"
    assert set(rows) == set(documented)


def test_alarms_table_matches_the_thresholds_in_code() -> None:
    from stacks.alarm_thresholds import ALARMS, IAM_SIGN_IN_ALARMS

    rows = [line for line in section(doc("operations.md"), "## Alarms").splitlines() if line.startswith("| `mlflow-")]
    assert rows == [rule.readme_row() for rule in (*ALARMS, *IAM_SIGN_IN_ALARMS)]


# --- the credentials commands -------------------------------------------------

FAKE_AWS = """#!/bin/sh
# Stands in for the AWS CLI (not installed here): answers the three reads of the
# README's block like a deployed project, or fails on FAIL_ON like the real CLI
# does without credentials (message on stderr, non-zero exit, nothing on stdout).
if [ "$1 $2" = "$FAIL_ON" ]; then
    echo "Unable to locate credentials. You can configure credentials by running \\"aws configure\\"." >&2
    exit 253
fi
case "$1 $2" in
    "ssm get-parameter") echo "https://abc123.execute-api.eu-west-1.amazonaws.com" ;;
    "cloudformation describe-stacks") echo "team-mlflow-login" ;;
    "secretsmanager get-secret-value")
        case "$*" in *"--secret-id team-mlflow-login"*) ;; *) echo "ResourceNotFoundException" >&2; exit 254 ;; esac
        echo '{"username": "mlflow", "password": "s3cret"}' ;;
    *) echo "unexpected: $*" >&2; exit 252 ;;
esac
"""


def _run_credentials_block(tmp_path, fail_on: str = "") -> subprocess.CompletedProcess[str]:
    credentials = section(doc("README.md"), "## Getting the URL and the credentials")
    block = re.search(r"```bash\n(.*?)```", credentials, re.DOTALL).group(1)
    fake = tmp_path / "aws"
    fake.write_text(FAKE_AWS, encoding="utf-8")
    fake.chmod(0o755)
    script = block + '\necho "URI=${MLFLOW_TRACKING_URI-unset} USER=${MLFLOW_TRACKING_USERNAME-unset}"' \
        ' "PASSWORD=${MLFLOW_TRACKING_PASSWORD-unset}"\n'  # fmt: skip
    env = {"PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}", "FAIL_ON": fail_on, "HOME": str(tmp_path)}
    return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60, check=False)


def test_credentials_block_exports_the_three_variables(tmp_path) -> None:
    result = _run_credentials_block(tmp_path)
    assert result.stdout == ("URI=https://abc123.execute-api.eu-west-1.amazonaws.com USER=mlflow PASSWORD=s3cret\n"), (
        result.stderr
    )
    assert result.stderr == ""


@pytest.mark.parametrize(
    "failing", ["ssm get-parameter", "cloudformation describe-stacks", "secretsmanager get-secret-value"]
)
def test_credentials_block_stops_with_a_message_when_a_command_fails(tmp_path, failing: str) -> None:
    result = _run_credentials_block(tmp_path, fail_on=failing)
    assert result.stdout == "URI=unset USER=unset PASSWORD=unset\n", "it carried on after a failed command"
    assert result.stderr.splitlines()[-1] == (
        "Could not read the MLflow URL or credentials (see the error above): check AWS_REGION and your AWS credentials"
    )


def test_prerequisites_name_the_aws_cli_v2() -> None:
    assert "[AWS CLI v2]" in section(doc("README.md"), "## Two commands")


def test_configuration_table_and_teardown_say_the_same_about_retain() -> None:
    """What `removal_policy=retain` keeps, in the table row and in the Teardown section."""
    row = next(line for line in doc("configuration.md").splitlines() if line.startswith("| `removal_policy` |"))
    teardown = section(doc("operations.md"), "## Teardown").split("**With `-c removal_policy=destroy`**", 1)[0]
    for kept in ("final snapshot", "buckets", "secret", "log group", "`mlflow-pyfunc`"):
        assert kept in row and kept in teardown, kept
    for where in (row, teardown):
        assert "deletion-protected" in where or "deletion protection" in where


def test_artifact_client_settings_are_the_ones_configure_mlflow_sets() -> None:
    """The Artifacts section's table and export line say what lab/source_dir/mlflow_setup.py sets."""
    from localrun.stack import artifact_transfer_settings

    artifacts = section(doc("proxy-and-artifacts.md"), "## Artifacts: through MLflow, large ones straight to S3")
    table = dict(re.findall(r"^\| `(MLFLOW_[A-Z_]+)` \| `([^`]+)` \|$", artifacts, re.M))
    exported = dict(re.findall(r"(MLFLOW_[A-Z_]+)=(\S+)", re.search(r"```bash\n(.*?)```", artifacts, re.S).group(1)))
    assert table == exported == artifact_transfer_settings()


def _headings(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings (lower case, punctuation dropped, spaces as hyphens)."""
    anchors, fenced = set(), False
    for line in page.read_text(encoding="utf-8").splitlines():
        fenced ^= line.startswith("```")
        if not fenced and re.match(r"#+ ", line):
            anchors.add(re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-"))
    return anchors


def test_every_relative_link_and_anchor_resolves() -> None:
    """Links to files of the repo exist; links to #anchors, on the page or another, name a heading there."""
    for page in [README, README.parent / "CONTRIBUTING.md", *sorted(DOCS.rglob("*.md"))]:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target):
                continue  # https:, mailto:
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            assert linked.exists(), f"{page.name}: link to missing {path}"
            if anchor:
                assert anchor in _headings(linked), f"{page.name}: no heading for {target}"


def test_iam_sign_in_block_sets_what_a_signed_client_needs() -> None:
    """The README's IAM block signs, and sends artifacts the way configure_mlflow() does for a signed client."""
    from localrun.stack import artifact_transfer_settings
    from stacks.names import SSM_IAM_TRACKING_URL

    block = re.search(
        r"```bash\n(.*?)```", section(README.read_text(encoding="utf-8"), "## Signing in with IAM (code)"), re.S
    )
    text = block.group(1)  # type: ignore[union-attr]
    assert re.search(r"MLFLOW_TRACKING_URI=\$\(aws ssm get-parameter --name (\S+) ", text)[1] == SSM_IAM_TRACKING_URL  # type: ignore[index]
    exported = dict(re.findall(r"(MLFLOW_[A-Z_0-9]+)=(\w+)\b", text.split("\n", 1)[1]))
    assert exported.pop("MLFLOW_TRACKING_AWS_SIGV4") == "true"
    signed = artifact_transfer_settings(signed=True)
    assert exported.items() <= signed.items()
    assert {key for key in signed if key.startswith("MLFLOW_ENABLE_PROXY")} | {
        "MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE"
    } <= exported.keys()
