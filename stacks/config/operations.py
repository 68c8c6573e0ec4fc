"""Running it: what is kept when the stack goes, backups, logs, alarms."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import StringConstraints, field_validator

from stacks.config.base import EMAIL, Invalid, Section, empty_is_none, setting

if TYPE_CHECKING:  # aws_cdk starts node: imported where a CDK value is made, not by tools that only validate
    from aws_cdk import RemovalPolicy
    from aws_cdk import aws_logs as logs

# An EventBridge Scheduler recurring expression: every N hours or days, or a six-field cron
# (minutes hours day-of-month month day-of-week year). Scheduler checks the fields themselves.
CRON = r"cron\(\S+( \S+){5}\)"
GC_SCHEDULE = rf"^(rate\((1 (hour|day)|([2-9]|[1-9][0-9]{{1,3}}) (hours|days))\)|{CRON})$"

# CloudWatch Logs retention periods (days) and their aws_logs.RetentionDays names.
LOG_RETENTION: dict[int, str] = {
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


class Operations(Section):
    log_retention_days: int = setting(
        30, ", ".join(map(str, LOG_RETENTION)), "CloudWatch Logs retention of every log group but the audit one"
    )
    # "Who changed what" must be answerable a year later: longer than the operational logs.
    audit_log_retention_days: int = setting(
        365, ", ".join(map(str, LOG_RETENTION)), "CloudWatch Logs retention of the audit log group"
    )
    removal_policy: Literal["retain", "destroy"] = setting(
        "retain",
        "retain, destroy",
        "retain keeps bucket, database (deletion protection, final snapshot) "
        "and secrets when the stack is deleted; destroy is for dev",
        problem="is not a removal policy",
    )
    # A week of point-in-time restore covers a mistake noticed after a weekend; Aurora
    # does not charge for backup storage up to the cluster's own size, which a week of
    # MLflow metadata stays within.
    backup_retention_days: int = setting(
        7, "1-35", "days of Aurora automated backups: how far back a point-in-time restore reaches", ge=1, le=35
    )
    artifact_version_retention_days: int = setting(
        90,
        "1-3650",
        "days S3 keeps an overwritten or deleted artifact's old version: how far back artifacts can be restored",
        ge=1,
        le=3650,
    )
    alarm_email: str | None = setting(
        None,
        "empty, or one email address",
        "address subscribed to the alarm topic (AWS emails a confirmation link first); empty subscribes nobody",
        problem="is not an email address",
        max_length=254,
    )

    gc_schedule: Annotated[str, StringConstraints(pattern=GC_SCHEDULE)] | None = setting(
        "cron(0 3 * * ? *)",
        "empty, rate(N hours|days), or cron(six fields), in UTC",
        "when the scheduled garbage collection runs (mlflow gc with the task's image and roles); empty: never",
        problem="is not an EventBridge Scheduler rate() or cron() expression",
    )
    gc_older_than_days: int = setting(
        30,
        "1-3650",
        "days a deleted run, experiment or logged model stays restorable before garbage collection removes it",
        ge=1,
        le=3650,
    )
    gc_delete_orphans: bool = setting(
        False,
        "true or false",
        "garbage collection also deletes artifact prefixes no run, logged model or model version references "
        "(always reported)",
    )

    @field_validator("alarm_email", "gc_schedule", mode="before")
    @classmethod
    def _empty(cls, value: Any) -> Any:
        return empty_is_none(value)

    @field_validator("log_retention_days", "audit_log_retention_days")
    @classmethod
    def _check_log_retention(cls, value: int) -> int:
        if value not in LOG_RETENTION:
            raise Invalid("is not a CloudWatch Logs retention period")
        return value

    @field_validator("alarm_email")
    @classmethod
    def _check_alarm_email(cls, value: str | None) -> str | None:
        if value is not None and not EMAIL.fullmatch(value):
            raise Invalid("is not an email address")
        return value

    @property
    def destroy_on_removal(self) -> bool:
        """True for dev stacks whose data may go with the stack."""
        return self.removal_policy == "destroy"

    @property
    def cdk_removal_policy(self) -> RemovalPolicy:
        """For stateful resources; the database uses SNAPSHOT instead of RETAIN."""
        from aws_cdk import RemovalPolicy

        return RemovalPolicy.DESTROY if self.destroy_on_removal else RemovalPolicy.RETAIN

    @property
    def log_retention(self) -> logs.RetentionDays:
        """The enum CDK log groups want (jsii's Python enum does not carry the day count)."""
        from aws_cdk import aws_logs as logs

        return logs.RetentionDays[LOG_RETENTION[self.log_retention_days]]

    @property
    def audit_log_retention(self) -> logs.RetentionDays:
        from aws_cdk import aws_logs as logs

        return logs.RetentionDays[LOG_RETENTION[self.audit_log_retention_days]]
