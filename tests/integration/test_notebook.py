"""The lab notebook, executed cell by cell against the local stack and moto (RUN_OFFLINE)."""

from __future__ import annotations

import re

import nbformat
import pytest
from mlflow import MlflowClient

from stacks import names
from tests.integration import studio_flow
from tests.integration.studio_flow import NOTEBOOK

# One worker executes the notebook once for all three Studio modules.
pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.xdist_group("studio")]

# The Studio e2e fixtures live in studio_flow.py (tests/integration/conftest.py is the proxy suite's).
notebook_run = studio_flow.notebook_run
studio_aws = studio_flow.studio_aws
# The profile's own SageMaker names: the notebook's execution role is tagged with them.
OWN = names.workflow_name_prefix(studio_flow.SHARED.profile)


def test_committed_notebook_has_no_outputs_and_one_switch():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    sources = "\n".join(c.source for c in code)
    assert re.search(r'^RUN_OFFLINE = os\.environ\.get\("RUN_OFFLINE", "false"\)', sources, re.M)
    # No MLflow version repeated in the notebook: it comes from docker/mlflow/requirements.txt.
    assert not re.search(r"mlflow\s*==\s*\d", sources)


def test_every_cell_ran(notebook_run):
    notebook_run.assert_every_cell_ran()


def test_notebook_reports_each_step(notebook_run, studio_aws):
    out = notebook_run.outputs()
    assert f"MLflow tracking URI {studio_aws.tracking_url}" in out
    # The configured (non-default) secret, found through the notebook's role.
    assert f"secret {studio_aws.secret_name!r}, from tag mlflow:credentials-secret of role" in out
    assert studio_aws.password not in out
    assert re.search(re.escape(OWN) + r"demo-\d{8}-\d{6}: InService", out)
    notebook_run.assert_model_served_and_removed()


def test_runs_and_registered_model_are_in_mlflow(notebook_run, studio_aws, mlflow_stack):
    client = MlflowClient(tracking_uri=mlflow_stack.direct_url)  # behind the proxy, unauthenticated
    # Each MLflow user gets their own experiment and model (others may only read them in accounts mode).
    experiment = client.get_experiment_by_name(f"sagemaker-studio-demo-{studio_aws.username}")
    runs = client.search_runs([experiment.experiment_id])
    by_name = {r.info.run_name: r for r in runs}
    assert {"local-c0.01", "local-c0.1"} <= set(by_name)
    job_runs = [r for r in runs if "sagemaker.training_job_name" in r.data.tags]
    assert len(job_runs) == 1
    job_run = job_runs[0]
    job = job_run.data.tags["sagemaker.training_job_name"]
    assert job.startswith(f"{OWN}train-") and job_run.info.run_name == job
    assert job_run.data.tags["sagemaker.training_job_arn"].endswith(f":training-job/{job}")

    versions = client.search_model_versions(f"name='breast-cancer-classifier-{studio_aws.username}'")
    assert versions and {v.run_id for v in versions} <= {r.info.run_id for r in runs}


def test_training_job_and_deployment_went_to_sagemaker_and_were_cleaned_up(notebook_run, studio_aws, moto_server):
    sagemaker = moto_server.client("sagemaker")
    jobs = sagemaker.list_training_jobs(NameContains=f"{OWN}train-")["TrainingJobSummaries"]
    assert jobs
    job = sagemaker.describe_training_job(TrainingJobName=jobs[0]["TrainingJobName"])
    # SageMaker runs the job as the profile's training role and the model as the serving role.
    assert job["RoleArn"] == studio_aws.training_role_arn
    (model,) = [c["params"] for c in notebook_run.calls if c["operation"] == "CreateModel"]
    assert model["ExecutionRoleArn"] == studio_aws.serving_role_arn
    assert job["HyperParameters"]["sagemaker_submit_directory"].startswith(
        f'"s3://{studio_aws.bucket}/sagemaker/{OWN}train-'
    )
    # The notebook deleted its endpoint, endpoint config and model.
    assert not sagemaker.list_endpoints(NameContains=f"{OWN}demo-")["Endpoints"]
    assert not sagemaker.list_endpoint_configs(NameContains=f"{OWN}demo-")["EndpointConfigs"]
    assert not sagemaker.list_models(NameContains=f"{OWN}demo-")["Models"]


def test_training_requirements_were_generated_from_the_pin(notebook_run):
    generated = (notebook_run.workdir / "source_dir" / "requirements.txt").read_text()
    pin = (notebook_run.workdir.parent / "docker" / "mlflow" / "requirements.txt").read_text()
    mlflow_line = next(line for line in pin.splitlines() if line.startswith("mlflow=="))
    assert mlflow_line in generated.splitlines()


def test_the_release_cell_sets_the_alias_and_says_nothing_deploys_here(notebook_run, studio_aws, mlflow_stack):
    """The test stacks publish no webhook URL (no model_deployments): the cell says so instead of waiting."""
    client = MlflowClient(tracking_uri=mlflow_stack.direct_url)
    name = f"breast-cancer-classifier-{studio_aws.username}"
    champion = client.get_model_version_by_alias(name, "champion")
    out = notebook_run.outputs()
    assert f"alias champion -> models:/{name}/{champion.version}" in out
    assert "does not deploy models on alias moves (model_deployments is empty): nothing to wait for" in out
