"""Aurora Serverless v2 capacity and pausing."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import field_validator

from stacks.config.base import Invalid, Section, setting

if TYPE_CHECKING:  # aws_cdk starts node: imported where a CDK value is made, not by tools that only validate
    from aws_cdk import Duration


class Database(Section):
    aurora_min_acu: float = setting(
        0.0, "0-256 in steps of 0.5", "Aurora capacity floor; 0 pauses the cluster when idle", allow_inf_nan=False
    )
    aurora_max_acu: float = setting(
        4.0, "1-256 in steps of 0.5, at least aurora_min_acu", "Aurora capacity ceiling", allow_inf_nan=False
    )
    aurora_auto_pause_minutes: int = setting(
        60, "5-1440", "idle minutes before Aurora pauses (only when aurora_min_acu is 0)", ge=5, le=1440
    )

    @field_validator("aurora_min_acu", "aurora_max_acu")
    @classmethod
    def _check_acu(cls, value: float, info: Any) -> float:
        low = 0 if info.field_name == "aurora_min_acu" else 1
        if not (low <= value <= 256 and (value * 2).is_integer()):
            raise Invalid("is not an allowed capacity")
        return value

    @property
    def auto_pause_enabled(self) -> bool:
        """Aurora pauses when idle only with a 0 ACU floor."""
        return self.aurora_min_acu == 0

    @property
    def aurora_auto_pause(self) -> Duration | None:
        """Idle time before Aurora pauses, or None when it never pauses."""
        from aws_cdk import Duration

        return Duration.minutes(self.aurora_auto_pause_minutes) if self.auto_pause_enabled else None
