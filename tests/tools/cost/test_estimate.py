"""`make cost`: the estimator's arithmetic on templates from the real synth, the CLI and the docs' figures."""

import json
import os
import re
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from tests.stacks.helpers import SSO_CONTEXT
from tests.synth import SCALE_TO_ZERO_VARIANT, synth_directory, synth_templates
from tests.test_readme import doc
from tests.tools.conftest import run_from_root
from tools import presets
from tools.cost.estimate import GB, Estimate, Prices, estimate, render, tasks_on_spot

ROOT = Path(__file__).resolve().parents[3]
PRICES = Prices.load()
USD = PRICES.usd
HOURS = 730
# One default task (1 vCPU, 2 GB) for a month, from the price table by hand; the same on Fargate Spot.
TASK_MONTH = (1 * USD["fargate_vcpu_hour"] + 2 * USD["fargate_gb_hour"]) * HOURS
SPOT_TASK_MONTH = TASK_MONTH * (1 - PRICES.assumed["fargate_spot_discount"])
# The default floor: the first task on regular Fargate, the second on Fargate Spot.
DEFAULT_TASKS_MONTH = TASK_MONTH + SPOT_TASK_MONTH


@pytest.fixture(scope="module")
def default() -> Estimate:
    return estimate(synth_templates(), PRICES)


@pytest.fixture(scope="module")
def dev() -> Estimate:
    return estimate(synth_templates(**presets.load("dev")), PRICES)


def _others(result: Estimate, item: str) -> dict[str, float]:
    return {line.item: line.usd for line in result.idle if line.item != item}


# One synth with several independent changes (each synth takes seconds): one task fewer
# (the on-demand one stays), a 0.5 ACU floor for Aurora and a second NAT gateway.
CHANGED = {"desired_task_count": 1, "min_task_count": 1, "aurora_min_acu": 0.5, "nat_gateways": 2}


@pytest.fixture(scope="module")
def changed() -> Estimate:
    return estimate(synth_templates(**CHANGED), PRICES)


def test_one_task_less_costs_exactly_the_spot_task_less(default: Estimate, changed: Estimate) -> None:
    assert default.line("Fargate tasks").usd == pytest.approx(DEFAULT_TASKS_MONTH, abs=1e-9)
    split = f"1 on-demand at ${TASK_MONTH:.2f} + 1 Spot at ${SPOT_TASK_MONTH:.2f} (assumed 50% off)"
    assert split in default.line("Fargate tasks").detail
    assert changed.line("Fargate tasks").usd == pytest.approx(TASK_MONTH, abs=1e-9)
    assert "Spot" not in changed.line("Fargate tasks").detail
    # Besides the lines the other two changes own, only what runs per task moves with the task count:
    # health-check flow logs.
    moved = {k for k, v in _others(default, "Fargate tasks").items() if v != _others(changed, "Fargate tasks")[k]}
    assert moved == {
        "VPC flow logs (health checks)",
        "Aurora Serverless v2 compute",
        "NAT gateways",
        "Public IPv4 addresses",
    }


_ONE_ON_DEMAND_REST_SPOT = [
    {"CapacityProvider": "FARGATE", "Base": 1, "Weight": 1},
    {"CapacityProvider": "FARGATE_SPOT", "Weight": 1000},
]


@pytest.mark.parametrize(
    ("strategy", "tasks", "spot"),
    [
        (None, 2, 0),  # the plain Fargate launch type
        (_ONE_ON_DEMAND_REST_SPOT, 1, 0),
        (_ONE_ON_DEMAND_REST_SPOT, 2, 1),
        (_ONE_ON_DEMAND_REST_SPOT, 4, 3),
        (
            [
                {"CapacityProvider": "FARGATE", "Base": 2, "Weight": 1},
                {"CapacityProvider": "FARGATE_SPOT", "Weight": 1000},
            ],
            4,
            2,
        ),
        ([{"CapacityProvider": "FARGATE", "Weight": 1}], 4, 0),  # on_demand_task_count at the ceiling
        ([{"CapacityProvider": "FARGATE_SPOT", "Weight": 1}], 3, 3),
        # Beyond the base, one task in four on regular Fargate; a tie goes to the first listed.
        (
            [
                {"CapacityProvider": "FARGATE", "Base": 1, "Weight": 1},
                {"CapacityProvider": "FARGATE_SPOT", "Weight": 3},
            ],
            5,
            3,
        ),
        (
            [
                {"CapacityProvider": "FARGATE", "Base": 1, "Weight": 1},
                {"CapacityProvider": "FARGATE_SPOT", "Weight": 1},
            ],
            3,
            1,
        ),
        # A weight of 0 places its base and nothing more.
        (
            [
                {"CapacityProvider": "FARGATE_SPOT", "Base": 1, "Weight": 0},
                {"CapacityProvider": "FARGATE", "Weight": 1},
            ],
            3,
            1,
        ),
    ],
)
def test_tasks_on_spot_follow_the_strategy_base_first_then_weights(
    strategy: list[dict[str, object]] | None, tasks: int, spot: int
) -> None:
    service = {} if strategy is None else {"CapacityProviderStrategy": strategy}
    assert tasks_on_spot(service, tasks) == spot


def test_the_default_idles_under_130_at_any_spot_discount_above_5_percent() -> None:
    # prices.json's word for its assumed Spot discount; the worst case it names, priced.
    low = Prices(**{**PRICES.__dict__, "assumed": {**PRICES.assumed, "fargate_spot_discount": 0.05}})
    assert estimate(synth_templates(), low).idle_total < 130
    none = Prices(**{**PRICES.__dict__, "assumed": {**PRICES.assumed, "fargate_spot_discount": 0.0}})
    assert estimate(synth_templates(), none).idle_total > 130  # so the claim is about Spot, not slack


def test_paused_aurora_leaves_only_storage(default: Estimate) -> None:
    assert default.line("Aurora Serverless v2 compute").usd == 0
    assert "paused when idle" in default.line("Aurora Serverless v2 compute").detail
    assert default.line("Aurora storage").usd == pytest.approx(1 * USD["aurora_storage_gb_month"])
    # Using it wakes the database: at least 0.5 ACU per hour of use.
    assert [(line.item, line.usd) for line in default.per_active_hour] == [
        ("Aurora awake", 0.5 * USD["aurora_acu_hour"])
    ]


def test_capacity_floor_and_nat_gateways_are_counted_from_the_templates(changed: Estimate) -> None:
    result = changed
    assert result.line("Aurora Serverless v2 compute").usd == pytest.approx(0.5 * USD["aurora_acu_hour"] * HOURS)
    assert result.per_active_hour == []
    assert result.line("NAT gateways").usd == pytest.approx(2 * USD["nat_gateway_hour"] * HOURS)
    assert result.line("Public IPv4 addresses").usd == pytest.approx(2 * USD["public_ipv4_hour"] * HOURS)


def test_idle_total_by_hand(default: Estimate) -> None:
    # Counted by reading the templates once, written down here: 1 NAT + its address, 1 ALB, 2 tasks,
    # 2 secrets, 1 key, 10 alarms reading 13 metrics (3 rate alarms read 2 each), 1 dashboard;
    # no Container Insights (off by default).
    health_checks = 2 * 2 * HOURS * 3600 / 15  # 2 ALB nodes x 2 tasks, every 15 s
    expected = (
        HOURS * (USD["nat_gateway_hour"] + USD["public_ipv4_hour"] + USD["alb_hour"])
        + DEFAULT_TASKS_MONTH
        + 1 * USD["aurora_storage_gb_month"]
        + 2 * USD["secret_month"]
        + 1 * USD["kms_key_month"]
        + 13 * USD["alarm_metric_month"]
        + 1 * USD["dashboard_month"]
        + health_checks * 440 / GB * USD["logs_ingest_gb"]
        + 10 * USD["s3_standard_gb_month"]
    )
    assert default.idle_total == pytest.approx(expected, abs=1e-6)
    assert default.idle_total == pytest.approx(sum(line.usd for line in default.idle))


def test_container_insights_adds_its_metrics_and_events_and_nothing_else(default: Estimate) -> None:
    enabled = estimate(synth_templates(container_insights="enabled"), PRICES)
    by_hand = 38 * USD["custom_metric_month"] + 2 * HOURS * 60 * 3000 / GB * USD["logs_ingest_gb"]
    assert enabled.line("Container Insights").usd == pytest.approx(by_hand)
    assert _others(enabled, "Container Insights") == {line.item: line.usd for line in default.idle}
    # docs/operations.md states the figure and the setting's row points there.
    text = " ".join(doc("operations.md").split())
    assert f"it would cost ${by_hand:.2f} a month on its own (`-c container_insights=enabled`" in text


def test_per_million_requests(default: Estimate) -> None:
    lines = {line.item: line.usd for line in default.per_million_requests}
    assert lines["API Gateway HTTP API"] == USD["http_api_million"]
    assert lines["ALB capacity units"] == pytest.approx(1_000_000 / (25 * 3600) * USD["alb_lcu_hour"])
    assert lines["CloudWatch Logs"] == pytest.approx(1_000_000 * 1100 / GB * USD["logs_ingest_gb"])


def test_iam_sign_in_adds_an_api_but_no_request_cost_and_health_checks_its_target_group(default: Estimate) -> None:
    """accounts mode: a request crosses the password API or the IAM API, never both; nginx's IAM port is a
    second target group, health-checked like the first."""
    accounts = estimate(synth_templates(auth_mode="accounts", user_profiles="alice,bob"), PRICES)
    requests = {line.item: line for line in accounts.per_million_requests}
    assert requests["API Gateway HTTP API"].usd == USD["http_api_million"]
    assert "one of the 2 APIs" in requests["API Gateway HTTP API"].detail
    assert accounts.line("API Gateway HTTP API").detail == "2 APIs, pay per request"
    checks = "VPC flow logs (health checks)"
    assert accounts.line(checks).usd == pytest.approx(2 * default.line(checks).usd)


def test_iam_sign_in_alarms_are_billed_for_the_metrics_they_read(default: Estimate) -> None:
    """Its three alarms: the 5xx rate reads two metrics, latency and unhealthy targets one each."""
    accounts = estimate(synth_templates(auth_mode="accounts", user_profiles="alice,bob"), PRICES)
    alarms = accounts.line("CloudWatch alarms")
    assert alarms.detail.startswith("13 alarms reading 17 metrics")
    assert alarms.usd - default.line("CloudWatch alarms").usd == pytest.approx(4 * USD["alarm_metric_month"])


def test_dev_preset_runs_one_task_and_pauses_aurora(default: Estimate, dev: Estimate) -> None:
    # Half a vCPU with 1 GB (tools/presets/dev.json).
    half_vcpu_task = (0.5 * USD["fargate_vcpu_hour"] + USD["fargate_gb_hour"]) * HOURS
    assert dev.line("Fargate tasks").usd == pytest.approx(half_vcpu_task, abs=1e-9)
    assert dev.line("NAT gateways").usd == pytest.approx(USD["nat_gateway_hour"] * HOURS)
    assert dev.line("Aurora Serverless v2 compute").usd == 0
    assert default.idle_total - dev.idle_total == pytest.approx(
        default.line("Fargate tasks").usd - half_vcpu_task + default.line("VPC flow logs (health checks)").usd / 2
    )


def test_sso_with_the_stacks_pool_adds_each_client_credentials_client_and_its_secret() -> None:
    # Two Studio profiles: each gets an app client with the client-credentials grant and a secret.
    sso = estimate(synth_templates(**SSO_CONTEXT), PRICES)
    default = estimate(synth_templates(**{"user_profiles": SSO_CONTEXT["user_profiles"]}), PRICES)
    assert sso.line("Cognito M2M app clients").usd == pytest.approx(2 * USD["cognito_m2m_client_month"])
    assert sso.line("Cognito user pool").usd == 0
    assert "first 10,000 monthly active users are free" in sso.line("Cognito user pool").detail
    # Besides them, four secrets: the session key, the UI client's, and one per profile's client.
    extra_secrets = sso.line("Secrets Manager").usd - default.line("Secrets Manager").usd
    assert extra_secrets == pytest.approx(4 * USD["secret_month"])
    # IAM sign-in (on by default with the pool) adds its alarms' four metrics and a second VPC flow-log line.
    iam_sign_in = sso.line("CloudWatch alarms").usd - default.line("CloudWatch alarms").usd
    assert iam_sign_in == pytest.approx(4 * USD["alarm_metric_month"])
    checks = "VPC flow logs (health checks)"
    iam_sign_in += sso.line(checks).usd - default.line(checks).usd
    assert sso.idle_total - default.idle_total == pytest.approx(
        2 * USD["cognito_m2m_client_month"] + extra_secrets + iam_sign_in
    )
    assert [line.item for line in sso.per_active_hour] == ["Aurora awake", "Cognito M2M tokens"]
    assert sso.per_active_hour[1].usd == pytest.approx(USD["cognito_m2m_token"])


def test_without_a_user_pool_there_is_no_cognito_line(default: Estimate) -> None:
    assert not [line for line in default.idle + default.per_active_hour if "Cognito" in line.item]


def test_another_feature_plan_is_named_not_priced() -> None:
    pool = {"Type": "AWS::Cognito::UserPool", "Properties": {"UserPoolTier": "PLUS"}}
    client = {"Type": "AWS::Cognito::UserPoolClient", "Properties": {"AllowedOAuthFlows": ["code"]}}
    result = estimate({"Stack": {"Resources": {"Pool": pool, "Client": client}}}, PRICES)
    assert result.line("Cognito user pool").detail == "Plus plan: billed per monthly active user (not estimated)"
    assert result.line("Cognito M2M app clients").usd == 0, "an authorization-code client is not billed per month"
    assert not result.per_active_hour


# --- CLI ---------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}
    return run_from_root([sys.executable, "-m", "tools.cost", *args], env, timeout=60)


def test_cli_prints_every_item_of_a_synthesized_app(default: Estimate) -> None:
    result = _cli(str(synth_directory()))
    assert result.returncode == 0, result.stderr
    for heading in ("Idle (deployed, nobody using it)", "Per million requests", "Not included:"):
        assert heading in result.stdout
    items = [line.item for line in default.idle + default.per_million_requests] + ["Total idle", "Total per million"]
    for item in ("NAT gateways", "Application Load Balancer", "Fargate tasks", "Aurora Serverless v2 compute",
                 "Aurora storage", "API Gateway HTTP API", "CloudWatch Logs", "Secrets Manager", "S3 artifacts",
                 "VPC endpoints", "Total idle"):  # fmt: skip
        assert item in items
        assert re.search(rf"^  {re.escape(item)} +\d+\.\d\d", result.stdout, re.MULTILINE), item
    assert f"Total idle {default.idle_total:.2f}" in " ".join(result.stdout.split())
    assert f"{PRICES.region} list prices checked {PRICES.checked}" in result.stdout


def test_cli_says_in_one_line_when_there_is_nothing_synthesized(tmp_path: Path) -> None:
    result = _cli(str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(
        f"error: cannot read a synthesized app in {tmp_path}"
    )


def test_make_cost_synthesizes_with_the_preset_and_the_overrides() -> None:
    # Not the calling make's flags (make test runs this): a plain `make -n` of its own.
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    result = run_from_root(
        ["make", "--no-print-directory", "-n", "cost", "PRESET=dev", "CDK_ARGS=-c mlflow_workers=3"], env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    synth = next(line for line in result.stdout.splitlines() if line.startswith("npx cdk synth"))
    assert "-c desired_task_count=1" in synth and "-c removal_policy=destroy" in synth
    assert synth.endswith("-c mlflow_workers=3"), "CDK_ARGS come last, so they win over the preset"
    assert result.stdout.splitlines()[-1].endswith("python -m tools.cost cdk.out.cost")


# --- price table and docs/operations.md ---------------------------------------


def test_every_price_names_its_aws_source_and_unit() -> None:
    data = json.loads((ROOT / "tools" / "cost" / "prices.json").read_text())
    assert data["region"] == "us-east-1" and date.fromisoformat(data["checked"])
    for name, entry in data["prices"].items():
        assert entry["usd"] > 0 and entry["unit"], name
        assert entry["source"].startswith("https://aws.amazon.com/") and entry["source"].endswith("/pricing/"), name
    for name, entry in data["assumptions"].items():
        assert entry["value"] > 0 and len(entry["why"].split()) >= 6, name


def _cost_block(marker: str) -> str:
    text = doc("operations.md")
    match = re.search(rf"<!-- cost:{marker} -->\n```text\n(.*?)\n```", text, re.DOTALL)
    assert match, f"docs/operations.md lacks the cost:{marker} block"
    return match.group(1)


def test_docs_show_the_current_lines_of_the_scheduled_estimate(default: Estimate) -> None:
    scheduled = estimate(synth_templates(**SCALE_TO_ZERO_VARIANT), PRICES)
    shown = _cost_block("schedule \\(the lines that change\\)").splitlines()
    assert len(shown) == 3
    assert set(shown) <= set(render(scheduled, PRICES, list(synth_templates())).splitlines())
    text = " ".join(doc("operations.md").split())
    tasks, total, saved = (
        default.line("Fargate tasks").usd,
        default.idle_total,
        round(default.idle_total, 2) - round(scheduled.idle_total, 2),  # the two totals as printed
    )
    assert f"instead of ${tasks:.2f} for the tasks and ${total:.2f} in all: ${saved:.2f} a month less" in text


def test_docs_state_what_spot_and_arm64_change(default: Estimate) -> None:
    text = " ".join(doc("operations.md").split())
    regular = Prices(**{**PRICES.__dict__, "assumed": {**PRICES.assumed, "fargate_spot_discount": 0.0}})
    without_spot = estimate(synth_templates(), regular)
    assert (
        f"(`-c on_demand_task_count=4`) the tasks cost ${without_spot.line('Fargate tasks').usd:.2f}"
        f" and the total is ${without_spot.idle_total:.2f}"
    ) in text
    arm = estimate(synth_templates(task_architecture="arm64"), PRICES)
    assert f"${arm.idle_total:.2f} a month idle instead of ${default.idle_total:.2f}" in text


def test_readme_prices_sso_with_cognito_from_the_price_table() -> None:
    text = " ".join(doc("operations.md").split())
    per_profile = USD["cognito_m2m_client_month"] + USD["secret_month"]
    assert (
        f"`sso` mode with the stack's Cognito pool adds about ${per_profile:.2f} a month per Studio profile"
        f" (its client-credentials app client and that client's secret) and ${2 * USD['secret_month']:.2f}"
        " for the session key and the sign-in client's secret." in text
    )
    tokens = " ".join(doc("auth-modes.md").split())  # the token prices are in Single sign-on, not in Cost
    assert f"used or not (${USD['cognito_m2m_client_month']:.2f} each in us-east-1" in tokens
    assert f"and each token request (${USD['cognito_m2m_token']:g})" in tokens


def test_readme_shows_the_current_output_for_the_defaults_and_dev(default: Estimate, dev: Estimate) -> None:
    stacks = list(synth_templates())
    assert _cost_block("defaults") == render(default, PRICES, stacks)
    assert _cost_block("dev") == render(dev, PRICES, stacks)


def test_a_schedule_to_zero_bills_the_tasks_for_the_hours_they_run(default: Estimate) -> None:
    scheduled = estimate(synth_templates(**SCALE_TO_ZERO_VARIANT), PRICES)
    # 07:00-19:00 UTC on the 261 weekdays of a 365-day year.
    share = 261 * 12 / (365 * 24)
    line = scheduled.line("Fargate tasks")
    assert line.usd == pytest.approx(DEFAULT_TASKS_MONTH * share, abs=1e-9)
    assert "x 35.8% of the time" in line.detail
    assert scheduled.line("VPC flow logs (health checks)").usd == pytest.approx(
        default.line("VPC flow logs (health checks)").usd * share, rel=1e-9
    )
    others = {k for k, v in _others(default, "Fargate tasks").items() if v != _others(scheduled, "Fargate tasks")[k]}
    assert others == {"VPC flow logs (health checks)"}
