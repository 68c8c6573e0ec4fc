"""moto's server with SageMaker's UpdateEndpoint, which moto (5.2.5, also 5.2.6) lacks: it answers 500.

The local AWS stand-in runs this module instead of ``python -m moto.server``
(same arguments): `install` adds the action to moto's SageMaker backend and
response class, the way moto dispatches every action (the response method
named after the action calls the backend method), then moto's server starts.

What it does, after the AWS API reference
(https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_UpdateEndpoint.html):

- An unknown endpoint or endpoint config, or an endpoint still creating or
  updating, is refused with ``ValidationException``.
- The endpoint becomes ``Updating`` and, once DescribeEndpoint has seen it so
  (moto's state manager, model ``sagemaker::endpoint-update``: one describe by
  default), ``InService`` with the new config's name and variants.
- ``DeploymentConfig`` is kept as ``LastDeploymentConfig``. When the update
  completes (the end of the baking period), an alarm of its
  ``AutoRollbackConfiguration`` in ``ALARM`` state in moto's CloudWatch rolls
  it back (https://docs.aws.amazon.com/sagemaker/latest/dg/deployment-guardrails-configuration.html):
  the endpoint stays ``InService`` with its old config and variants and
  ``FailureReason`` names the alarms.

Not modelled: traffic shifting steps and their timing, ``RetainAllVariantProperties``
and ``ExcludeRetainedVariantProperties`` (the new config's variants are taken
as they are), rolling updates, and alarms that trip while a real fleet serves.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Final

from moto.cloudwatch.models import cloudwatch_backends
from moto.core.responses import ActionResult
from moto.core.utils import utcnow
from moto.moto_api import state_manager
from moto.moto_api._internal.managed_state_model import ManagedState
from moto.sagemaker.exceptions import ValidationError
from moto.sagemaker.models import FakeEndpoint, FakeEndpointConfig, SageMakerModelBackend
from moto.sagemaker.responses import SageMakerResponse

# moto's state-manager model: how an update progresses (moto-api's set-transition may change it).
UPDATE_MODEL: Final = "sagemaker::endpoint-update"
# Updating until DescribeEndpoint has shown it once: a poller sees both states, as in AWS.
DEFAULT_TRANSITION: Final = {"progression": "manual", "times": 1}
_SETTLING: Final = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"})


class _Progress(ManagedState):
    """Updating, then InService: when moto's state manager says the update is done."""

    def __init__(self) -> None:
        super().__init__(UPDATE_MODEL, [("Updating", "InService")])


@dataclass
class _Update:
    """An update in progress: what the endpoint becomes unless an alarm rolls it back."""

    config_name: str
    variants: list[dict[str, Any]]
    deployment_config: dict[str, Any] | None
    progress: _Progress


def _updates(backend: SageMakerModelBackend) -> dict[str, _Update]:
    """The backend's updates in progress by endpoint name (gone with the backend on a moto reset)."""
    updates: dict[str, _Update] = backend.__dict__.setdefault("endpoint_updates", {})
    return updates


def _tripped_alarms(backend: SageMakerModelBackend, deployment_config: dict[str, Any] | None) -> list[str]:
    """The update's rollback alarms that moto's CloudWatch (same account and region) shows in ALARM."""
    named = ((deployment_config or {}).get("AutoRollbackConfiguration") or {}).get("Alarms") or []
    alarms = cloudwatch_backends[backend.account_id][backend.region_name].alarms
    return [
        alarm["AlarmName"]
        for alarm in named
        if alarm["AlarmName"] in alarms and alarms[alarm["AlarmName"]].state_value == "ALARM"
    ]


def _settle(backend: SageMakerModelBackend, endpoint: FakeEndpoint, *, observed: bool) -> None:
    """Complete the endpoint's update, if any, once it is done, or roll it back.

    `observed`: a DescribeEndpoint, which moves the update along (moto's manual progression).
    """
    update = _updates(backend).get(endpoint.endpoint_name)
    if update is None:
        return
    done = update.progress.status == "InService"
    if observed:
        update.progress.advance()
    if not done:
        return
    del _updates(backend)[endpoint.endpoint_name]
    tripped = _tripped_alarms(backend, update.deployment_config)
    if tripped:
        reason = (
            f"Update to endpoint configuration {update.config_name} rolled back: "
            f"alarm(s) {', '.join(tripped)} in ALARM state during the deployment."
        )
        endpoint.failure_reason = reason  # type: ignore[assignment]  # moto types it as always None
    else:
        endpoint.endpoint_config_name = update.config_name
        endpoint.production_variants = endpoint._process_production_variants(update.variants)
        endpoint.failure_reason = None
    endpoint.endpoint_status = "InService"
    endpoint.last_modified_time = utcnow()


def update_endpoint(
    backend: SageMakerModelBackend,
    endpoint_name: str,
    endpoint_config_name: str,
    deployment_config: dict[str, Any] | None = None,
    retain_deployment_config: bool = False,
) -> str:
    """UpdateEndpoint: validate, mark the endpoint Updating; DescribeEndpoint completes it. Its ARN."""
    endpoint = backend.endpoints.get(endpoint_name)
    if endpoint is None:
        arn = FakeEndpoint.arn_formatter(endpoint_name, backend.account_id, backend.region_name)
        raise ValidationError(message=f"Could not find endpoint '{arn}'.")
    _settle(backend, endpoint, observed=False)
    config = backend.endpoint_configs.get(endpoint_config_name)
    if config is None:
        arn = FakeEndpointConfig.arn_formatter(endpoint_config_name, backend.account_id, backend.region_name)
        raise ValidationError(message=f"Could not find endpoint configuration '{arn}'.")
    if endpoint.endpoint_status in _SETTLING:
        raise ValidationError(message=f"Cannot update in-progress endpoint '{endpoint.arn}'.")
    if retain_deployment_config and deployment_config is None:
        deployment_config = getattr(endpoint, "last_deployment_config", None)
    if deployment_config is not None:
        endpoint.last_deployment_config = deployment_config  # type: ignore[attr-defined]
    _updates(backend)[endpoint_name] = _Update(
        endpoint_config_name, config.production_variants, deployment_config, _Progress()
    )
    endpoint.endpoint_status = "Updating"
    endpoint.last_modified_time = utcnow()
    return endpoint.arn


def _update_endpoint_action(self: SageMakerResponse) -> ActionResult:
    """The response handler moto's dispatch finds by the action's name."""
    arn = update_endpoint(
        self.sagemaker_backend,
        endpoint_name=self._get_param("EndpointName"),
        endpoint_config_name=self._get_param("EndpointConfigName"),
        deployment_config=self._get_param("DeploymentConfig"),
        retain_deployment_config=bool(self._get_param("RetainDeploymentConfig")),
    )
    return ActionResult({"EndpointArn": arn})


def install() -> None:
    """Add UpdateEndpoint to moto's SageMaker in this process (idempotent)."""
    if getattr(SageMakerResponse, "update_endpoint", None) is _update_endpoint_action:
        return
    describe = SageMakerModelBackend.describe_endpoint

    def describe_endpoint(self: SageMakerModelBackend, endpoint_name: str) -> dict[str, Any]:
        """moto's DescribeEndpoint, after moving an update along."""
        if endpoint := self.endpoints.get(endpoint_name):
            _settle(self, endpoint, observed=True)
        return describe(self, endpoint_name)

    SageMakerModelBackend.describe_endpoint = describe_endpoint  # type: ignore[method-assign]
    SageMakerResponse.update_endpoint = _update_endpoint_action  # type: ignore[attr-defined]
    state_manager.register_default_transition(UPDATE_MODEL, transition=DEFAULT_TRANSITION)


def main(argv: list[str] | None = None) -> None:
    """moto's server (its own command line) with the additions installed."""
    import moto.server

    install()
    moto.server.main(argv if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    main()
