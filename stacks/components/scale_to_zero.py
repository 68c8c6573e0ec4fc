"""Scaling the service to zero outside working hours, and what the UI answers meanwhile.

Application Auto Scaling's scheduled actions set the service's capacity: at
``down`` minimum and maximum 0 (ECS stops every task), at ``up`` the usual
floor and ceiling (ECS starts ``min_count`` tasks). Without tasks the ALB
would answer its bare 503, and API Gateway passes it on: instead, EventBridge
Scheduler points the listener's default action at a fixed 503 page saying
when MLflow is back, and at ``up`` back at the target group. With IAM
sign-in the IAM listener gets the same treatment, with the message as JSON
in MLflow's error shape, since its callers are code. The
``tasks-below-desired`` alarm would fire every night: the same schedules
disable its actions at ``down`` and enable them at ``up``, when one more resets
it to OK, so that tasks that fail to come back turn it to ALARM again, and tell.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_scheduler_targets as scheduler_targets
from constructs import Construct

# ALB fixed responses carry at most 1024 characters.
MAX_PAGE_CHARS = 1024
_DAYS = {"MON": "Monday", "TUE": "Tuesday", "WED": "Wednesday", "THU": "Thursday", "FRI": "Friday"}
_DAYS |= {"SAT": "Saturday", "SUN": "Sunday"}


def back_at(up: str) -> str:
    """When ``up`` (a six-field cron) brings MLflow back, in words where the fields are plain."""
    minute, hour, day_of_month, month, day_of_week, _year = up.removeprefix("cron(").removesuffix(")").split(" ")
    if not (minute.isdigit() and hour.isdigit()) or (day_of_month, month) not in (("?", "*"), ("*", "*")):
        return f"on the schedule {up} (UTC)"
    when = f"at {int(hour):02d}:{int(minute):02d} UTC"
    if day_of_week in ("*", "?"):
        return f"{when} every day"
    first, _, last = day_of_week.upper().partition("-")
    if first in _DAYS and (not last or last in _DAYS):
        return f"{when}, {_DAYS[first]}" + (f" to {_DAYS[last]}" if last else "")
    return f"{when} (days of the week {day_of_week})"


def scaled_down_page(up: str) -> str:
    """The HTML the ALB answers while the service is scaled to zero."""
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>MLflow is scaled down</title></head>'
        "<body><h1>MLflow is scaled down outside working hours</h1>"
        f"<p>To save cost this MLflow server runs no tasks now. It is back {escape(back_at(up))}.</p>"
        "<p>Requests sent until then fail with this 503; retry after that time.</p></body></html>"
    )
    if len(page) > MAX_PAGE_CHARS:  # pragma: no cover - the cron pattern bounds no field, the words do
        raise ValueError(f"the scaled-down page has {len(page)} characters, more than an ALB fixed response holds")
    return page


def scaled_down_error(up: str) -> str:
    """The JSON the IAM listener answers meanwhile: an MLflow REST error, for signed clients that read the body."""
    body = json.dumps(
        {
            "error_code": "TEMPORARILY_UNAVAILABLE",
            "message": f"MLflow is scaled down outside working hours and runs no tasks now. It is back {back_at(up)}; "
            "retry after that time.",
        }
    )
    if len(body) > MAX_PAGE_CHARS:  # pragma: no cover - as for the page
        raise ValueError(f"the scaled-down error has {len(body)} characters, more than an ALB fixed response holds")
    return body


def _fixed_503(content_type: str, body: str) -> dict[str, Any]:
    return {
        "Type": "fixed-response",
        "FixedResponseConfig": {"StatusCode": "503", "ContentType": content_type, "MessageBody": body},
    }


class ScheduledScaleToZero(Construct):
    """Scheduled actions on ``scaling`` and five schedules: listener page and alarm actions, off and on; alarm reset.

    With ``iam_listener`` (IAM sign-in; forwarding to ``iam_target_group``) two more schedules
    switch it between ``scaled_down_error`` and its target group. The schedules' role may modify
    only these listeners and switch only the alarm named ``alarm_name``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        down: str,
        up: str,
        scaling: ecs.ScalableTaskCount,
        min_count: int,
        max_count: int,
        listener: elbv2.ApplicationListener,
        target_group: elbv2.ApplicationTargetGroup,
        alarm_name: str,
        iam_listener: elbv2.ApplicationListener | None = None,
        iam_target_group: elbv2.ApplicationTargetGroup | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        if (iam_listener is None) != (iam_target_group is None):
            raise ValueError("iam_listener and iam_target_group come together")
        scaling.scale_on_schedule(
            "ScaleToZero", schedule=appscaling.Schedule.expression(down), min_capacity=0, max_capacity=0
        )
        scaling.scale_on_schedule(
            "ScaleBack", schedule=appscaling.Schedule.expression(up), min_capacity=min_count, max_capacity=max_count
        )

        stack = Stack.of(self)
        self.page = scaled_down_page(up)
        self.role = iam.Role(
            self,
            "SchedulerRole",
            assumed_by=iam.ServicePrincipal(
                "scheduler.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": stack.account}}
            ),
            description="MLflow scale-to-zero schedules: the listener's default action and one alarm's actions",
        )
        listener_statement = iam.PolicyStatement(
            actions=["elasticloadbalancing:ModifyListener"],
            resources=[listener.listener_arn] + ([iam_listener.listener_arn] if iam_listener else []),
        )
        alarm_arn = stack.format_arn(
            service="cloudwatch", resource="alarm", resource_name=alarm_name, arn_format=ArnFormat.COLON_RESOURCE_NAME
        )

        def alarm_statement(action: str) -> iam.PolicyStatement:
            return iam.PolicyStatement(actions=[f"cloudwatch:{action}"], resources=[alarm_arn])

        def default_action(target: elbv2.IApplicationListener, action: dict[str, Any]) -> dict[str, Any]:
            return {"ListenerArn": target.listener_arn, "DefaultActions": [action]}

        def forward(group: elbv2.ApplicationTargetGroup) -> dict[str, Any]:
            return {"Type": "forward", "TargetGroupArn": group.target_group_arn}

        self.inputs: dict[str, dict[str, Any]] = {
            "ShowPage": default_action(listener, _fixed_503("text/html", self.page)),
            "Forward": default_action(listener, forward(target_group)),
            "MuteAlarm": {"AlarmNames": [alarm_name]},
            "UnmuteAlarm": {"AlarmNames": [alarm_name]},
            "WatchAgain": {
                "AlarmName": alarm_name,
                "StateValue": "OK",
                "StateReason": "MLflow scaled back up on schedule: the tasks are expected healthy again",
            },
        }
        modify = ("elasticloadbalancingv2", "modifyListener", listener_statement)
        calls = {
            "ShowPage": (down, *modify),
            "Forward": (up, *modify),
            "MuteAlarm": (down, "cloudwatch", "disableAlarmActions", alarm_statement("DisableAlarmActions")),
            "UnmuteAlarm": (up, "cloudwatch", "enableAlarmActions", alarm_statement("EnableAlarmActions")),
            # Left in ALARM from the night, it would not tell of tasks that never start.
            "WatchAgain": (up, "cloudwatch", "setAlarmState", alarm_statement("SetAlarmState")),
        }
        if iam_listener is not None and iam_target_group is not None:
            self.inputs["IamShowError"] = default_action(
                iam_listener, _fixed_503("application/json", scaled_down_error(up))
            )
            self.inputs["IamForward"] = default_action(iam_listener, forward(iam_target_group))
            calls["IamShowError"] = (down, *modify)
            calls["IamForward"] = (up, *modify)
        self.schedules: dict[str, scheduler.Schedule] = {}
        for name, (expression, service, action, statement) in calls.items():
            self.schedules[name] = scheduler.Schedule(
                self,
                name,
                schedule=scheduler.ScheduleExpression.expression(expression),
                description=f"MLflow scale to zero: {service} {action}"
                + (" (IAM sign-in)" if name.startswith("Iam") else ""),
                target=scheduler_targets.Universal(
                    service=service,
                    action=action,
                    input=scheduler.ScheduleTargetInput.from_object(self.inputs[name]),
                    policy_statements=[statement],
                    role=self.role,
                    # A call that fails for an hour is overtaken by the next one.
                    retry_attempts=5,
                    max_event_age=Duration.hours(1),
                ),
            )
