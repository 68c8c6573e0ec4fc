"""The task-memory model against the measured figures it was made from."""

import pytest

from stacks import task_sizing
from stacks.config import ConfigError, ProjectConfig


@pytest.mark.parametrize("workers", sorted(task_sizing.MEASURED_MLFLOW_PEAK_MIB))
def test_model_lies_above_every_measurement_but_not_far(workers: int) -> None:
    measured = task_sizing.MEASURED_MLFLOW_PEAK_MIB[workers] + task_sizing.MEASURED_NGINX_PEAK_MIB
    estimate = task_sizing.peak_mib(workers)
    assert measured <= estimate <= measured * 1.15


def test_needed_memory_keeps_the_headroom() -> None:
    for workers in range(1, 17):
        needed, peak = task_sizing.memory_needed_mib(workers), task_sizing.peak_mib(workers)
        assert (needed - peak) / needed >= task_sizing.HEADROOM - 1e-9  # free share at peak
        assert (needed - 1 - peak) / (needed - 1) < task_sizing.HEADROOM  # and the smallest such size
        assert task_sizing.max_workers(needed) == workers
        assert task_sizing.max_workers(needed - 1) == workers - 1


def test_the_default_task_holds_the_default_workers_and_at_most_four() -> None:
    defaults = ProjectConfig()
    assert task_sizing.max_workers(defaults.service.task_memory_mib) == 4 >= defaults.service.mlflow_workers


@pytest.mark.parametrize("workers", range(1, 17))
def test_configuration_accepts_exactly_the_worker_counts_that_fit(workers: int) -> None:
    fits = task_sizing.memory_needed_mib(workers) <= 2048
    if fits:
        assert ProjectConfig(mlflow_workers=workers).service.mlflow_workers == workers
    else:
        with pytest.raises(ConfigError, match=rf"^Invalid configuration: mlflow_workers={workers} needs a task of"):
            ProjectConfig(mlflow_workers=workers)


def test_sixteen_workers_fit_a_large_enough_task() -> None:
    config = ProjectConfig(mlflow_workers=16, task_cpu=2048, task_memory_mib=8192)
    assert config.service.mlflow_workers == 16
