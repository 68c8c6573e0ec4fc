"""The MLflow service: Fargate task size and count, workers, the HTTP API in front of it."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints, field_validator, model_validator

from stacks.config.base import Invalid, Section, empty_is_none, json_text, setting
from stacks.config.operations import CRON

# Fargate: memory values (MiB) accepted with each CPU value.
FARGATE_MEMORY: dict[int, range | tuple[int, ...]] = {
    256: (512, 1024, 2048),
    512: range(1024, 4096 + 1, 1024),
    1024: range(2048, 8192 + 1, 1024),
    2048: range(4096, 16384 + 1, 1024),
    4096: range(8192, 30720 + 1, 1024),
    8192: range(16384, 61440 + 1, 4096),
    16384: range(32768, 122880 + 1, 8192),
}
TaskCpu = Literal[256, 512, 1024, 2048, 4096, 8192, 16384]
# Fargate's CPU architectures, as the project spells them (ECS says X86_64 and ARM64).
TaskArchitecture = Literal["x86_64", "arm64"]


# Cron as both Application Auto Scaling's scheduled actions and EventBridge Scheduler take it.
Cron = Annotated[str, StringConstraints(pattern=rf"^{CRON}$")]


class ScaleToZero(BaseModel):
    """When the service goes to zero tasks (``down``) and comes back to its floor (``up``), in UTC."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    down: Cron
    up: Cron

    @model_validator(mode="after")
    def _two_moments(self) -> ScaleToZero:
        if self.down == self.up:
            raise Invalid("has the same expression for down and up")
        return self


def describe(values: range | tuple[int, ...]) -> str:
    if isinstance(values, range):
        return f"{values[0]}-{values[-1]} in steps of {values.step}"
    return ", ".join(map(str, values))


class Service(Section):
    task_cpu: TaskCpu = setting(
        1024, describe(tuple(FARGATE_MEMORY)), "Fargate task CPU units", problem="is not a Fargate CPU value"
    )
    # Must hold mlflow_workers with headroom: the measured figures are in stacks/task_sizing.py.
    task_memory_mib: int = setting(
        2048,
        "a size Fargate pairs with task_cpu, enough for mlflow_workers",
        "Fargate task memory (MiB), shared by nginx and MLflow",
    )
    task_architecture: TaskArchitecture = setting(
        "x86_64",
        "x86_64, arm64",
        "CPU architecture of the tasks and of the nginx and MLflow images built for them (arm64: Graviton)",
        problem="is not a Fargate CPU architecture",
    )
    desired_task_count: int = setting(
        2, "1-20, from min_task_count to max_task_count", "tasks running after a deploy", ge=1, le=20
    )
    min_task_count: int = setting(2, "1-20, at most max_task_count", "autoscaling floor", ge=1, le=20)
    max_task_count: int = setting(4, "1-20, at least min_task_count", "autoscaling ceiling", ge=1, le=20)
    on_demand_task_count: int = setting(
        1,
        "1-20",
        "tasks that run on regular Fargate; the service's tasks beyond it run on Fargate Spot (up to 70% cheaper,"
        " interruptible with two minutes' notice, see [Fargate Spot](operations.md#fargate-spot)); at"
        " max_task_count or more, none do",
        ge=1,
        le=20,
    )
    container_insights: Literal["disabled", "enabled", "enhanced"] = setting(
        "disabled",
        "disabled, enabled, enhanced",
        "ECS Container Insights for the cluster (about $11.50 a month enabled, see [Cost](operations.md#cost));"
        " the alarms and dashboard use the ALB's free target metrics either way",
    )
    cpu_scaling_target_percent: int = setting(60, "10-90", "average CPU the service scales to hold", ge=10, le=90)
    mlflow_workers: int = setting(
        2, "1-16, as many as task_memory_mib holds", "MLflow server worker processes per task", ge=1, le=16
    )
    api_throttle_rate_limit: float = setting(
        100.0, "more than 0, at most 10000", "HTTP API steady-state requests per second", gt=0, le=10000
    )
    api_throttle_burst_limit: int = setting(200, "1-5000", "HTTP API burst size in requests", ge=1, le=5000)
    ai_gateway: bool = setting(
        False,
        "true or false",
        "MLflow's AI gateway: the server keeps LLM provider keys and calls providers for users; off unless true",
    )
    vpc_link_keepalive: bool = setting(
        True,
        "true or false",
        "a daily request through the HTTP API keeps its VPC link ACTIVE (AWS idles it after 60 days without traffic)",
    )

    schedule_scale_to_zero: ScaleToZero | None = setting(
        None,
        'empty, or JSON {"down": "cron(six fields)", "up": "cron(six fields)"}, in UTC',
        "scales the service to zero tasks at down and back to min_task_count at up; meanwhile the UI answers "
        "a 503 page saying when it is back ([Scaling to zero at night](operations.md#scaling-to-zero-at-night))",
        problem='is not {"down": "cron(...)", "up": "cron(...)"} with six-field cron expressions',
    )

    @field_validator("schedule_scale_to_zero", mode="before")
    @classmethod
    def _json_object(cls, value: Any) -> Any:
        """`-c schedule_scale_to_zero='{...}'` arrives as JSON text; cdk.json gives the object itself."""
        return json_text(empty_is_none(value), None)

    @field_validator("task_cpu", mode="before")
    @classmethod
    def _cpu_as_number(cls, value: Any) -> Any:
        """`-c task_cpu=2048` arrives as text; Literal compares it as the number it names."""
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
        return value

    @field_validator("ai_gateway", mode="before")
    @classmethod
    def _true_or_false(cls, value: Any) -> Any:
        """JSON true/false, or the words `-c key=true|false` gives; not 1, "yes" or "on"."""
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        if not isinstance(value, bool):
            raise Invalid("is not true or false")
        return value
