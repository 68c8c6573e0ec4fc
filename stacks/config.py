"""Typed, validated project settings read from CDK context.

Every setting has a default in cdk.json's "context" and can be overridden per
command, e.g. ``npx cdk deploy --all -c task_cpu=2048 -c task_memory_mib=8192``.
Values given with ``-c`` arrive as strings, so they are coerced to the field's
type here, and each one is checked against what the AWS service accepts: a
mistake fails ``cdk synth`` with one clear sentence instead of a deploy that
rolls back half way.
"""

import dataclasses
import difflib
import ipaddress
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_logs as logs
from constructs import Construct

CDK_JSON = Path(__file__).resolve().parent.parent / "cdk.json"

# Fargate: memory values (MiB) accepted with each CPU value.
_FARGATE_MEMORY: dict[int, range | tuple[int, ...]] = {
    256: (512, 1024, 2048),
    512: range(1024, 4096 + 1, 1024),
    1024: range(2048, 8192 + 1, 1024),
    2048: range(4096, 16384 + 1, 1024),
    4096: range(8192, 30720 + 1, 1024),
    8192: range(16384, 61440 + 1, 4096),
    16384: range(32768, 122880 + 1, 8192),
}
# CloudWatch Logs retention periods (days) and their aws_logs.RetentionDays names.
_LOG_RETENTION: dict[int, str] = {
    1: "ONE_DAY",
    3: "THREE_DAYS",
    5: "FIVE_DAYS",
    7: "ONE_WEEK",
    14: "TWO_WEEKS",
    30: "ONE_MONTH",
    60: "TWO_MONTHS",
    90: "THREE_MONTHS",
    120: "FOUR_MONTHS",
    150: "FIVE_MONTHS",
    180: "SIX_MONTHS",
    365: "ONE_YEAR",
    400: "THIRTEEN_MONTHS",
    545: "EIGHTEEN_MONTHS",
    731: "TWO_YEARS",
    1096: "THREE_YEARS",
    1827: "FIVE_YEARS",
    2192: "SIX_YEARS",
    2557: "SEVEN_YEARS",
    2922: "EIGHT_YEARS",
    3288: "NINE_YEARS",
    3653: "TEN_YEARS",
}
_INT_TEXT = re.compile(r"[+-]?[0-9]+")
_FLOAT_TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_SECRET_NAME = re.compile(r"[A-Za-z0-9/_+=.@-]{1,512}")
_ARN_SUFFIX = re.compile(r"-.{6}\Z", re.DOTALL)  # what Secrets Manager appends to secret ARNs
_DOMAIN_ID = re.compile(r"d-[a-z0-9]{12}")
_PROFILE_NAME = re.compile(r"[a-zA-Z0-9](?:-*[a-zA-Z0-9]){0,62}")


class ConfigError(ValueError):
    """One invalid setting: the message names the key, the value and what is allowed."""


def _describe(values: range | tuple[int, ...]) -> str:
    if isinstance(values, range):
        return f"{values[0]}-{values[-1]} in steps of {values.step}"
    return ", ".join(map(str, values))


def _fail(key: str, value: Any, problem: str, allowed: str) -> NoReturn:
    shown = repr(value)
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    raise ConfigError(f"Invalid configuration: {key}={shown} {problem}; allowed: {allowed}.")


def _setting(default: Any, allowed: str, purpose: str) -> Any:
    """A field documented in its metadata: error messages quote "allowed"; the README table mirrors both."""
    return field(default=default, metadata={"allowed": allowed, "purpose": purpose})


@dataclass(frozen=True)
class ProjectConfig:
    """Deployment settings; the context key of each one is the field name."""

    vpc_cidr: str = _setting(
        "10.40.0.0/16",
        "an IPv4 network with zero host bits and a /16 to /20 prefix",
        "VPC address range; 3 subnet tiers x up to 3 AZs must fit in it",
    )
    az_count: int = _setting(2, "2 or 3", "availability zones; the ALB and Aurora need at least two")
    nat_gateways: int = _setting(
        1, "1 to az_count", "NAT gateways; private tasks need egress to pull images and reach AWS APIs"
    )
    task_cpu: int = _setting(1024, _describe(tuple(_FARGATE_MEMORY)), "Fargate task CPU units")
    # Measured (benchmarks/server_memory.py): MLflow with 2 workers peaks near 860 MiB
    # under load, nginx near 14 MiB; 2048 MiB keeps more than 30% headroom.
    task_memory_mib: int = _setting(
        2048, "a size Fargate pairs with task_cpu", "Fargate task memory (MiB), shared by nginx and MLflow"
    )
    desired_task_count: int = _setting(2, "1-20, from min_task_count to max_task_count", "tasks running after a deploy")
    min_task_count: int = _setting(2, "1-20, at most max_task_count", "autoscaling floor")
    max_task_count: int = _setting(4, "1-20", "autoscaling ceiling")
    cpu_scaling_target_percent: int = _setting(60, "10-90", "average CPU the service scales to hold")
    mlflow_workers: int = _setting(2, "1-16", "MLflow server worker processes per task")
    aurora_min_acu: float = _setting(
        0.0, "0-256 in steps of 0.5", "Aurora capacity floor; 0 pauses the cluster when idle"
    )
    aurora_max_acu: float = _setting(4.0, "1-256 in steps of 0.5, at least aurora_min_acu", "Aurora capacity ceiling")
    aurora_auto_pause_minutes: int = _setting(
        60, "5-1440", "idle minutes before Aurora pauses (only when aurora_min_acu is 0)"
    )
    log_retention_days: int = _setting(
        30, ", ".join(map(str, _LOG_RETENTION)), "CloudWatch Logs retention of every log group"
    )
    removal_policy: str = _setting(
        "retain",
        "retain, destroy",
        "retain keeps bucket, database (deletion protection, final snapshot) "
        "and secrets when the stack is deleted; destroy is for dev",
    )
    credentials_secret_name: str = _setting(
        "mlflow-server-credentials",
        "1-512 of A-Z a-z 0-9 / _ + = . @ -, not ending in a hyphen and 6 characters",
        "Secrets Manager name of the MLflow basic-auth credentials",
    )
    sagemaker_domain_id: str | None = _setting(
        None, "empty, or d- and 12 lowercase letters or digits", "existing Studio domain to use; empty creates one"
    )
    user_profile_name: str = _setting(
        "mlflow-user", "1-63 letters, digits and inner hyphens", "Studio user profile to create"
    )
    api_throttle_rate_limit: float = _setting(
        100.0, "more than 0, at most 10000", "HTTP API steady-state requests per second"
    )
    api_throttle_burst_limit: int = _setting(200, "1-5000", "HTTP API burst size in requests")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _coerce(f, getattr(self, f.name)))
        self._validate()

    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> "ProjectConfig":
        """Build from the whole CDK context, ignoring the CDK's own keys ("@..." flags, "a:b" keys)."""
        known = [f.name for f in dataclasses.fields(cls)]
        ours = {k: v for k, v in context.items() if not k.startswith("@") and ":" not in k}
        for key in ours:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise ConfigError(
                    f"Invalid configuration: unknown context key {key!r}{hint}; allowed keys: {', '.join(known)}."
                )
        return cls(**ours)

    @property
    def destroy_on_removal(self) -> bool:
        """True for dev stacks whose data may go with the stack."""
        return self.removal_policy == "destroy"

    @property
    def cdk_removal_policy(self) -> RemovalPolicy:
        """For stateful resources; the database uses SNAPSHOT instead of RETAIN."""
        return RemovalPolicy.DESTROY if self.destroy_on_removal else RemovalPolicy.RETAIN

    @property
    def auto_pause_enabled(self) -> bool:
        """Aurora pauses when idle only with a 0 ACU floor."""
        return self.aurora_min_acu == 0

    @property
    def aurora_auto_pause(self) -> Duration | None:
        """Idle time before Aurora pauses, or None when it never pauses."""
        return Duration.minutes(self.aurora_auto_pause_minutes) if self.auto_pause_enabled else None

    @property
    def creates_studio_domain(self) -> bool:
        """No domain id given: the Studio stack creates a domain in the project VPC."""
        return self.sagemaker_domain_id is None

    @property
    def log_retention(self) -> logs.RetentionDays:
        """The enum CDK log groups want (jsii's Python enum does not carry the day count)."""
        return logs.RetentionDays[_LOG_RETENTION[self.log_retention_days]]

    def _check(self, key: str, ok: bool, problem: str = "is out of range") -> None:
        if not ok:
            _fail(key, getattr(self, key), problem, _allowed(key))

    def _validate(self) -> None:
        try:
            net = ipaddress.IPv4Network(self.vpc_cidr)
            if str(net) != self.vpc_cidr:
                raise ValueError("not in canonical a.b.c.d/n form")
        except ValueError:
            _fail(
                "vpc_cidr",
                self.vpc_cidr,
                "is not an IPv4 network in CIDR form with zero host bits",
                "a network such as 10.40.0.0/16 with a /16 to /20 prefix",
            )
        self._check("vpc_cidr", 16 <= net.prefixlen <= 20, f"has a /{net.prefixlen} prefix")
        self._check("az_count", self.az_count in (2, 3))
        self._check("nat_gateways", 1 <= self.nat_gateways <= 3)
        self._check("task_cpu", self.task_cpu in _FARGATE_MEMORY, "is not a Fargate CPU value")
        for key in ("desired_task_count", "min_task_count", "max_task_count"):
            self._check(key, 1 <= getattr(self, key) <= 20)
        self._check("cpu_scaling_target_percent", 10 <= self.cpu_scaling_target_percent <= 90)
        self._check("mlflow_workers", 1 <= self.mlflow_workers <= 16)
        for key, low in (("aurora_min_acu", 0), ("aurora_max_acu", 1)):
            acu = getattr(self, key)
            self._check(key, low <= acu <= 256 and (acu * 2).is_integer(), "is not an allowed capacity")
        self._check("aurora_auto_pause_minutes", 5 <= self.aurora_auto_pause_minutes <= 1440)
        self._check(
            "log_retention_days", self.log_retention_days in _LOG_RETENTION, "is not a CloudWatch Logs retention period"
        )
        self._check("removal_policy", self.removal_policy in ("retain", "destroy"), "is not a removal policy")
        name = self.credentials_secret_name
        usable = bool(_SECRET_NAME.fullmatch(name)) and not _ARN_SUFFIX.search(name)
        self._check("credentials_secret_name", usable, "is not a usable Secrets Manager name")
        self._check(
            "sagemaker_domain_id",
            self.sagemaker_domain_id is None or bool(_DOMAIN_ID.fullmatch(self.sagemaker_domain_id)),
            "is not a SageMaker domain id",
        )
        self._check(
            "user_profile_name",
            bool(_PROFILE_NAME.fullmatch(self.user_profile_name)),
            "is not a SageMaker user profile name",
        )
        self._check("api_throttle_rate_limit", 0 < self.api_throttle_rate_limit <= 10000)
        self._check("api_throttle_burst_limit", 1 <= self.api_throttle_burst_limit <= 5000)

        # Rules between fields.
        if self.nat_gateways > self.az_count:
            _fail(
                "nat_gateways",
                self.nat_gateways,
                f"is more than az_count={self.az_count}",
                f"1-{self.az_count}, at most one per AZ",
            )
        memory = _FARGATE_MEMORY[self.task_cpu]
        if self.task_memory_mib not in memory:
            _fail(
                "task_memory_mib",
                self.task_memory_mib,
                f"is not accepted by Fargate with task_cpu={self.task_cpu}",
                _describe(memory),
            )
        if self.min_task_count > self.max_task_count:
            _fail(
                "min_task_count",
                self.min_task_count,
                f"is more than max_task_count={self.max_task_count}",
                f"1-{self.max_task_count}",
            )
        if not self.min_task_count <= self.desired_task_count <= self.max_task_count:
            _fail(
                "desired_task_count",
                self.desired_task_count,
                "is outside the autoscaling range",
                f"{self.min_task_count}-{self.max_task_count} (min_task_count to max_task_count)",
            )
        if self.aurora_min_acu > self.aurora_max_acu:
            _fail(
                "aurora_min_acu",
                self.aurora_min_acu,
                f"is more than aurora_max_acu={self.aurora_max_acu:g}",
                f"0-{self.aurora_max_acu:g} in steps of 0.5",
            )


def _allowed(key: str) -> str:
    return next(f.metadata["allowed"] for f in dataclasses.fields(ProjectConfig) if f.name == key)


def _coerce(f: "dataclasses.Field[Any]", value: Any) -> Any:
    """Turn a context value (JSON value, or a string from `-c key=value`) into the field's type."""
    if f.type is not int and f.type is not float:  # str, or str | None
        if value is None and f.type is not str:
            return None
        if not isinstance(value, str):
            _fail(f.name, value, "is not a string", f.metadata["allowed"])
        text = value.strip()
        return text if text or f.type is str else None
    if isinstance(value, str) and (_INT_TEXT if f.type is int else _FLOAT_TEXT).fullmatch(value.strip()):
        value = f.type(value.strip())
    if isinstance(value, int) and not isinstance(value, bool):
        return value if f.type is int else float(value)
    if isinstance(value, float) and math.isfinite(value) and (f.type is float or value.is_integer()):
        return f.type(value)
    kind = "a whole number" if f.type is int else "a finite number"
    _fail(f.name, value, f"is not {kind}", f.metadata["allowed"])


def cdk_json_context(path: Path = CDK_JSON) -> dict[str, Any]:
    """cdk.json's context; tests pass it to cdk.App(context=...), which does not read cdk.json."""
    return dict(json.loads(path.read_text(encoding="utf-8"))["context"])


def config_from_app(app: Construct) -> ProjectConfig:
    """The validated config for an app (or any construct) from its tree's context."""
    return ProjectConfig.from_context(app.node.get_all_context())
