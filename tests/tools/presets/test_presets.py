"""Presets: named context files `make ... PRESET=<name>` turns into -c arguments."""

import subprocess
import sys
from pathlib import Path

from stacks.config import ProjectConfig, cdk_json_context
from tools import presets

ROOT = Path(__file__).resolve().parents[3]


def test_dev_preset_is_the_cheapest_sensible_deployment() -> None:
    settings = presets.load("dev")
    config = ProjectConfig.from_context({**cdk_json_context(), **settings})
    assert (config.service.desired_task_count, config.service.min_task_count, config.service.task_cpu) == (1, 1, 512)
    # The smallest task Fargate pairs with half a vCPU holds MLflow's default two workers (stacks/task_sizing.py).
    assert (config.service.task_memory_mib, config.service.mlflow_workers) == (1024, 2)
    assert config.network.nat_gateways == 1
    assert config.database.auto_pause_enabled
    assert config.operations.destroy_on_removal


def test_context_args_quote_each_setting() -> None:
    assert presets.context_args({"a": 1, "b": "x", "c": ["p", "q"]}) == ["-c", "a=1", "-c", "b=x", "-c", "c=p,q"]


def test_cli_prints_cdk_arguments_or_one_line_for_an_unknown_preset() -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "tools.presets", "dev"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert ok.returncode == 0 and ok.stdout.startswith("-c desired_task_count=1 -c min_task_count=1")
    bad = subprocess.run(
        [sys.executable, "-m", "tools.presets", "prod"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert bad.returncode == 2 and bad.stderr == "error: no preset 'prod'; presets: dev\n"
