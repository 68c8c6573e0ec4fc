"""The artifact bucket keys one Studio profile's workflow uses, by its name prefix."""

from dataclasses import dataclass

from aws_cdk import aws_s3 as s3

from stacks import names


@dataclass(frozen=True)
class WorkflowKeys:
    """Object ARN patterns (and a listing prefix) of one profile's keys.

    MLflow's SageMaker deployment uploads ``<model name>/model.tar.gz``, and the
    profile's model names start with its prefix; its training jobs keep their code and
    output under ``TRAINING_KEY_PREFIX/<job name>/``, also named with it.
    """

    name_prefix: str  # names.workflow_name_prefix of the profile
    model_data: str
    job_keys: str
    job_listing: str  # the s3:prefix a listing of the job keys sends

    @classmethod
    def of(cls, bucket: s3.IBucket, name_prefix: str) -> "WorkflowKeys":
        jobs = f"{names.TRAINING_KEY_PREFIX}/{name_prefix}*"
        return cls(
            name_prefix=name_prefix,
            model_data=bucket.arn_for_objects(f"{name_prefix}*/model.tar.gz"),
            job_keys=bucket.arn_for_objects(jobs),
            job_listing=jobs,
        )
