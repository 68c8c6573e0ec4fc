"""Build the serving image during `cdk deploy`: start the CodeBuild project, wait, fail the deploy on failure.

Runs under aws-cdk-lib's custom-resource provider framework: `on_event`
starts a build on Create and on Update (CloudFormation sends an Update only
when a property changes, i.e. the pinned MLflow version or the project), and
`is_complete` polls it until it ends. A failed build fails the resource, so
the deploy stops and rolls back with the build's own reason and log link.
Delete does nothing: tags are immutable and endpoints may still pull the image.
"""

from __future__ import annotations

from typing import Any

import boto3

Event = dict[str, Any]


def codebuild() -> Any:
    return boto3.client("codebuild")


def on_event(event: Event, _context: object = None) -> Event:
    if event["RequestType"] == "Delete":
        return {"PhysicalResourceId": event["PhysicalResourceId"]}
    properties = event["ResourceProperties"]
    project, version = properties["ProjectName"], properties["MlflowVersion"]
    build = codebuild().start_build(projectName=project)["build"]
    print(f"started build {build['id']} of {project} for MLflow {version}")
    # A new id for a new version: CloudFormation then deletes the old one (a no-op).
    return {"PhysicalResourceId": f"{project}:{version}", "Data": {"BuildId": build["id"]}}


def is_complete(event: Event, _context: object = None) -> Event:
    if event["RequestType"] == "Delete":
        return {"IsComplete": True}
    build_id = event["Data"]["BuildId"]
    (build,) = codebuild().batch_get_builds(ids=[build_id])["builds"]
    status = build["buildStatus"]
    if status == "IN_PROGRESS":
        return {"IsComplete": False}
    if status == "SUCCEEDED":
        return {"IsComplete": True}
    raise RuntimeError(f"Serving image build {build_id} {status}: {failure_reason(build)}")


def failure_reason(build: Event) -> str:
    """The failed phase and CodeBuild's message for it, plus where the full log is."""
    failed = [phase for phase in build.get("phases", []) if phase.get("phaseStatus") not in (None, "SUCCEEDED")]
    reasons = [
        f"{phase['phaseType']} {phase['phaseStatus']}"
        + "".join(f" ({c['message']})" for c in phase.get("contexts", []) if c.get("message"))
        for phase in failed
    ]
    link = build.get("logs", {}).get("deepLink")
    return "; ".join(reasons or ["no failed phase reported"]) + (f". Build log: {link}" if link else "")
