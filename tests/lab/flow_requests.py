"""Turn the AWS calls the Studio flow made (recorded in moto) into IAM authorization requests.

Three sources, all derived from what actually ran:
- every recorded API call, mapped to the IAM action(s) it needs and the
  resource ARN as in the deployed account (plus the implied ones: iam:PassRole
  for a role handed to SageMaker, sagemaker:AddTags for tags on create); calls
  from a training job's process are made as the job's role, the others as the
  Studio role;
- what SageMaker itself does with the passed role for the recorded training
  job and model (fetch code and model data, write output, pull images, logs),
  keyed by the role that was passed;
- the calls that only happen online: invoking the endpoint (offline the
  notebook scores locally).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlparse

from tests.lab.iam_policy import Request

PASSED_TO_SAGEMAKER = {"iam:PassedToService": "sagemaker.amazonaws.com"}
# Calls that IAM never denies (documented: GetCallerIdentity needs no permission).
NO_PERMISSION_NEEDED = {("sts", "GetCallerIdentity")}

_S3_ACTIONS = {
    "PutObject": "s3:PutObject",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
    "AbortMultipartUpload": "s3:AbortMultipartUpload",
    "GetObject": "s3:GetObject",
    "HeadObject": "s3:GetObject",
    "DeleteObject": "s3:DeleteObject",
    "PutObjectTagging": "s3:PutObjectTagging",
    "ListObjectsV2": "s3:ListBucket",
    "ListObjects": "s3:ListBucket",
    "HeadBucket": "s3:ListBucket",
    "GetBucketLocation": "s3:GetBucketLocation",
}
# Operation noun -> (request field naming the resource, ARN resource type); longest first.
_SAGEMAKER_RESOURCES = (
    ("EndpointConfig", "EndpointConfigName", "endpoint-config"),
    ("Endpoint", "EndpointName", "endpoint"),
    ("TrainingJob", "TrainingJobName", "training-job"),
    ("Model", "ModelName", "model"),
)


def instance_types_context(operation: str, params: dict[str, Any]) -> dict[str, str | list[str]]:
    """The sagemaker:InstanceTypes key IAM sees for a call that chooses instances (none for others)."""
    if operation == "CreateTrainingJob":
        config = params["ResourceConfig"]
        groups = config.get("InstanceGroups") or [config]
        return {"sagemaker:InstanceTypes": [group["InstanceType"] for group in groups]}
    if operation == "CreateEndpointConfig":
        variants = params["ProductionVariants"]
        types = [variant["InstanceType"] for variant in variants if "InstanceType" in variant]
        return {"sagemaker:InstanceTypes": types} if types else {}
    return {}


class FlowMapper:
    """Knows the account, region and how test-only names map to deployed ones."""

    def __init__(
        self,
        *,
        account: str,
        region: str,
        secret_arn: Callable[[str], str],
        stack_arn: Callable[[str], str],
        s3_key: Callable[[str, str], str] = lambda bucket, key: key,
    ) -> None:
        self.account = account
        self.region = region
        self.secret_arn = secret_arn
        self.stack_arn = stack_arn
        self.s3_key = s3_key

    def arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.region}:{self.account}:{resource}"

    def s3_object(self, bucket: str, key: str) -> str:
        return f"arn:aws:s3:::{bucket}/{self.s3_key(bucket, key)}"

    # -- recorded calls --------------------------------------------------------------
    def requests_for_call(self, call: dict[str, Any]) -> list[Request]:
        service, op, params = call["service"], call["operation"], call["params"]
        why = f"{service}:{op} (recorded)"
        if (service, op) in NO_PERMISSION_NEEDED:
            return []
        if (service, op) == ("sts", "AssumeRole") and params.get("RoleSessionName") == "SageMaker":
            # The offline stand-in for SageMaker assuming the job's role (sagemaker_steps.run_like_training_job).
            return []
        if service == "s3":
            action = _S3_ACTIONS.get(op)
            if action is None:
                raise KeyError(f"no IAM mapping for s3 {op}")
            bucket = params["Bucket"]
            resource = self.s3_object(bucket, params["Key"]) if "Key" in params else f"arn:aws:s3:::{bucket}"
            # A listing's prefix is what its permission may be conditioned on.
            context: dict[str, str | list[str]] = {"s3:prefix": params["Prefix"]} if "Prefix" in params else {}
            return [Request(action, resource, context, why=why)]
        if service == "secretsmanager":
            return [Request(f"secretsmanager:{op}", self.secret_arn(params["SecretId"]), why=why)]
        if service == "cloudformation" and op == "DescribeStacks":
            return [Request("cloudformation:DescribeStacks", self.stack_arn(params["StackName"]), why=why)]
        if service == "ssm":
            names = params.get("Names") or [params["Name"]]
            return [Request(f"ssm:{op}", self.arn("ssm", f"parameter/{n.lstrip('/')}"), why=why) for n in names]
        if service == "iam" and op == "GetRole":
            return [Request("iam:GetRole", f"arn:aws:iam::{self.account}:role/{params['RoleName']}", why=why)]
        if service == "ecr":
            if op == "GetAuthorizationToken":
                return [Request("ecr:GetAuthorizationToken", "*", why=why)]
            return [Request(f"ecr:{op}", self.arn("ecr", f"repository/{params['repositoryName']}"), why=why)]
        if service == "sagemaker":
            return self._sagemaker(op, params, why)
        if service == "codebuild":
            return [Request(f"codebuild:{op}", self.arn("codebuild", f"project/{params['projectName']}"), why=why)]
        raise KeyError(f"no IAM mapping for {service}:{op}; add one to tests/lab/flow_requests.py")

    def _sagemaker(self, op: str, params: dict[str, Any], why: str) -> list[Request]:
        if op.startswith("List"):
            return [Request(f"sagemaker:{op}", "*", why=why)]
        match = next((m for m in _SAGEMAKER_RESOURCES if op.endswith(m[0])), None)
        if match is None:
            raise KeyError(f"no resource for sagemaker:{op}; add one to tests/lab/flow_requests.py")
        _, name_field, kind = match
        # SageMaker ARNs carry resource names in lower case.
        resource = self.arn("sagemaker", f"{kind}/{params[name_field].lower()}")
        requests = [Request(f"sagemaker:{op}", resource, instance_types_context(op, params), why=why)]
        if op in ("CreateEndpoint", "UpdateEndpoint"):
            # Conservatively also on the configuration the endpoint is built from.
            config = self.arn("sagemaker", f"endpoint-config/{params['EndpointConfigName'].lower()}")
            requests.append(Request(f"sagemaker:{op}", config, why=f"{why}: its endpoint config"))
        if op.startswith("Create") and params.get("Tags"):
            requests.append(Request("sagemaker:AddTags", resource, why=f"{why}: tags on create"))
        for role_field in ("RoleArn", "ExecutionRoleArn"):
            if role_field in params:
                requests.append(
                    Request("iam:PassRole", params[role_field], PASSED_TO_SAGEMAKER, why=f"{why}: passes the role")
                )
        return requests

    # -- what SageMaker does with the passed role ---------------------------------------
    def service_side_requests(self, calls: Iterable[dict[str, Any]]) -> dict[str, list[Request]]:
        """Passed role ARN -> what SageMaker does as that role for the recorded jobs and models.

        A training job acts as its RoleArn, a model as its ExecutionRoleArn, an
        endpoint (its logs) as the role of each model its configuration serves.
        """
        calls = [c for c in calls if c["service"] == "sagemaker"]
        model_roles = {
            c["params"]["ModelName"]: c["params"]["ExecutionRoleArn"] for c in calls if c["operation"] == "CreateModel"
        }
        config_models = {
            c["params"]["EndpointConfigName"]: [v["ModelName"] for v in c["params"]["ProductionVariants"]]
            for c in calls
            if c["operation"] == "CreateEndpointConfig"
        }
        by_role: dict[str, list[Request]] = {}
        for call in calls:
            op, params = call["operation"], call["params"]
            if op == "CreateTrainingJob":
                by_role.setdefault(params["RoleArn"], []).extend(self._training_job(params))
            elif op == "CreateModel":
                by_role.setdefault(params["ExecutionRoleArn"], []).extend(self._model(params))
            elif op == "CreateEndpoint":
                for model in config_models[params["EndpointConfigName"]]:
                    by_role.setdefault(model_roles[model], []).extend(self._endpoint(params))
        return by_role

    def _training_job(self, params: dict[str, Any]) -> list[Request]:
        job = params["TrainingJobName"]
        why = f"training job {job} (SageMaker, as the passed role)"
        code = urlparse(params["HyperParameters"]["sagemaker_submit_directory"].strip('"'))
        output = urlparse(params["OutputDataConfig"]["S3OutputPath"])
        key = f"{output.path.strip('/')}/{job}/output/model.tar.gz"
        group = self.arn("logs", "log-group:/aws/sagemaker/TrainingJobs")
        return [
            Request("s3:GetObject", self.s3_object(code.netloc, code.path.lstrip("/")), why=why),
            Request("s3:PutObject", self.s3_object(output.netloc, key), why=why),
            *self._image_pull(params["AlgorithmSpecification"]["TrainingImage"], why),
            Request("logs:CreateLogGroup", group, why=why),
            Request("logs:CreateLogStream", f"{group}:log-stream:{job}/algo-1-1700000000", why=why),
            Request("logs:PutLogEvents", f"{group}:log-stream:{job}/algo-1-1700000000", why=why),
            Request("cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": "/aws/sagemaker/TrainingJobs"}, why=why),
        ]

    def _model(self, params: dict[str, Any]) -> list[Request]:
        container = params["PrimaryContainer"]
        why = f"model {params['ModelName']} (SageMaker hosting, as the passed role)"
        data = urlparse(container["ModelDataUrl"])
        return [
            Request("s3:GetObject", self.s3_object(data.netloc, data.path.lstrip("/")), why=why),
            *self._image_pull(container["Image"], why),
        ]

    def _endpoint(self, params: dict[str, Any]) -> list[Request]:
        endpoint = params["EndpointName"]
        why = f"endpoint {endpoint} (SageMaker hosting, as its model's role)"
        group = self.arn("logs", f"log-group:/aws/sagemaker/Endpoints/{endpoint}")
        return [
            Request("logs:CreateLogGroup", group, why=why),
            Request("logs:CreateLogStream", f"{group}:log-stream:AllTraffic/i-0abc", why=why),
            Request("logs:PutLogEvents", f"{group}:log-stream:AllTraffic/i-0abc", why=why),
        ]

    def _image_pull(self, image: str, why: str) -> list[Request]:
        registry, _, repository = image.partition("/")
        account, _, rest = registry.partition(".dkr.ecr.")
        region = rest.split(".", 1)[0]
        name = repository.split(":", 1)[0].split("@", 1)[0]
        repo_arn = f"arn:aws:ecr:{region}:{account}:repository/{name}"
        return [Request("ecr:GetAuthorizationToken", "*", why=why)] + [
            Request(action, repo_arn, why=why)
            for action in ("ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage")
        ]

    # -- online-only steps ------------------------------------------------------------
    def online_only_requests(self, calls: Iterable[dict[str, Any]]) -> list[Request]:
        requests = []
        for call in calls:
            if call["service"] == "sagemaker" and call["operation"] == "CreateEndpoint":
                endpoint = call["params"]["EndpointName"].lower()
                requests.append(
                    Request(
                        "sagemaker:InvokeEndpoint",
                        self.arn("sagemaker", f"endpoint/{endpoint}"),
                        why="notebook: invoke (online)",
                    )
                )
        return requests
