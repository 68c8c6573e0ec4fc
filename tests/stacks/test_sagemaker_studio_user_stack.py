"""SageMakerStudioUserStack: execution role, Studio domain and profile, serving-image build."""

import json
from typing import Any

import pytest

from stacks import names
from stacks.mlflow_version import pinned_mlflow_version
from tests.stacks.helpers import (
    Template,
    as_list,
    ingress_rules,
    only,
    policy_statements,
    props,
    render,
    resources,
    statement_by_sid,
)
from tests.synth import synth_templates

ARN = "arn:${AWS::Partition}"
REGION_ACCOUNT = "${AWS::Region}:${AWS::AccountId}"


def _resources(statement: dict[str, Any]) -> set[str]:
    return {render(r) for r in as_list(statement["Resource"])}


def _actions(statement: dict[str, Any]) -> set[str]:
    return set(as_list(statement["Action"]))


def _workflow_policy(template: Template) -> list[dict[str, Any]]:
    role_id = _role_id(template)
    (policy,) = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for p in resources(template, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in p["Properties"]["Roles"]
    ]
    return policy


def _role_id(template: Template) -> str:
    (role_id,) = [
        logical_id
        for logical_id, role in resources(template, "AWS::IAM::Role").items()
        if role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]
        == {"Service": "sagemaker.amazonaws.com"}
    ]
    return role_id


def test_role_is_assumed_by_sagemaker_and_has_no_aws_managed_policy(studio_template: Template) -> None:
    role = studio_template["Resources"][_role_id(studio_template)]["Properties"]
    managed = [render(arn) for arn in role["ManagedPolicyArns"]]
    assert managed == ["${MLflowVpcStack:" + managed[0].split(":", 1)[1]]
    assert "StorageWorkflowAccess" in managed[0]
    assert "Policies" not in role


def test_role_reads_only_the_credentials_secret(studio_template: Template) -> None:
    statement = statement_by_sid(studio_template, "ReadMlflowCredentials")
    assert _actions(statement) == {"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"}
    (secret,) = _resources(statement)
    assert secret.startswith("${MLflowVpcStack:PublishOutputRefCredentialsSecret")
    for other in policy_statements(studio_template):
        if any(a.startswith("secretsmanager:") for a in _actions(other)):
            assert other is statement or other == statement


def test_role_reads_stack_outputs_and_parameters(studio_template: Template) -> None:
    stacks_statement = statement_by_sid(studio_template, "ReadStackOutputs")
    assert _actions(stacks_statement) == {"cloudformation:DescribeStacks"}
    assert _resources(stacks_statement) == {
        f"{ARN}:cloudformation:{REGION_ACCOUNT}:stack/{names.VPC_STACK}/*",
        f"{ARN}:cloudformation:{REGION_ACCOUNT}:stack/{names.GATEWAY_STACK}/*",
    }
    parameters = statement_by_sid(studio_template, "ReadMlflowParameters")
    assert _actions(parameters) == {"ssm:GetParameter", "ssm:GetParameters"}
    assert _resources(parameters) == {f"{ARN}:ssm:{REGION_ACCOUNT}:parameter/mlflow/*"}


def test_artifact_access_is_the_bucket_and_two_key_prefixes(vpc_template: Template) -> None:
    (policy,) = resources(vpc_template, "AWS::IAM::ManagedPolicy").values()
    statements = {s["Sid"]: s for s in policy["Properties"]["PolicyDocument"]["Statement"]}
    assert _actions(statements["ListArtifactBucket"]) == {"s3:ListBucket", "s3:GetBucketLocation"}
    bucket = next(r for r in _resources(statements["ListArtifactBucket"]))
    assert bucket.startswith("${StorageArtifacts") and bucket.endswith(".Arn}")
    assert _actions(statements["ReadWriteWorkflowObjects"]) == {
        "s3:GetObject", "s3:PutObject", "s3:PutObjectTagging", "s3:DeleteObject", "s3:AbortMultipartUpload",
    }
    assert _resources(statements["ReadWriteWorkflowObjects"]) == {f"{bucket}/mlflow-*", f"{bucket}/sagemaker/*"}


def test_sagemaker_actions_are_limited_to_mlflow_prefixed_resources(studio_template: Template) -> None:
    statement = statement_by_sid(studio_template, "ManageWorkflowSageMakerResources")
    assert {
        "sagemaker:DescribeTrainingJob",
        "sagemaker:CreateModel", "sagemaker:DeleteModel",
        "sagemaker:DeleteEndpointConfig",
        "sagemaker:CreateEndpoint", "sagemaker:DescribeEndpoint", "sagemaker:DeleteEndpoint",
        "sagemaker:InvokeEndpoint",
    } <= _actions(statement)
    assert _resources(statement) == {
        f"{ARN}:sagemaker:{REGION_ACCOUNT}:{kind}/mlflow-*"
        for kind in ("training-job", "model", "endpoint-config", "endpoint")
    }


def test_instances_are_chosen_only_from_the_allowed_types(studio_template: Template) -> None:
    statement = statement_by_sid(studio_template, "TrainAndHostOnAllowedInstanceTypes")
    assert _actions(statement) == {"sagemaker:CreateTrainingJob", "sagemaker:CreateEndpointConfig"}
    assert _resources(statement) == {
        f"{ARN}:sagemaker:{REGION_ACCOUNT}:{kind}/mlflow-*" for kind in ("training-job", "endpoint-config")
    }
    assert statement["Condition"] == {
        "ForAllValues:StringEquals": {"sagemaker:InstanceTypes": ["ml.m5.large", "ml.m5.xlarge", "ml.c5.xlarge"]},
        "Null": {"sagemaker:InstanceTypes": "false"},
    }
    # No other statement lets the role create either one without the condition.
    for other in policy_statements(studio_template):
        if other is not statement and other["Effect"] == "Allow":
            assert not _actions(other) & _actions(statement), other.get("Sid")


def test_pass_role_only_itself_only_to_sagemaker(studio_template: Template) -> None:
    statement = statement_by_sid(studio_template, "PassSelfToSageMaker")
    assert _actions(statement) == {"iam:PassRole"}
    assert _resources(statement) == {"${%s.Arn}" % _role_id(studio_template)}
    assert statement["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}


def test_ecr_pull_is_the_serving_and_framework_repositories(studio_template: Template) -> None:
    statement = statement_by_sid(studio_template, "PullServingAndFrameworkImages")
    assert _actions(statement) == {"ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"}
    repository_id, _ = only(studio_template, "AWS::ECR::Repository")
    assert _resources(statement) == {
        "${%s.Arn}" % repository_id,
        f"{ARN}:ecr:${{AWS::Region}}:*:repository/sagemaker-scikit-learn",
    }


def test_serving_image_check_is_scoped_to_its_repository(studio_template: Template) -> None:
    statement = statement_by_sid(studio_template, "CheckServingImageExists")
    repository_id, _ = only(studio_template, "AWS::ECR::Repository")
    assert _actions(statement) == {"ecr:DescribeImages"}
    assert _resources(statement) == {"${%s.Arn}" % repository_id}


def test_unscoped_actions_are_only_reads_and_list_calls(studio_template: Template) -> None:
    for statement in _workflow_policy(studio_template):
        if "*" in _resources(statement):
            for action in _actions(statement):
                assert action.split(":")[1].startswith(("List", "GetAuthorizationToken", "PutMetricData")), action
    metrics = statement_by_sid(studio_template, "SageMakerJobMetrics")
    assert metrics["Condition"] == {"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}}


def test_no_wildcard_s3_or_secret_listing(studio_template: Template, vpc_template: Template) -> None:
    for template in (studio_template, vpc_template):
        for statement in policy_statements(template):
            actions = _actions(statement)
            assert "secretsmanager:ListSecrets" not in actions
            assert not any(a in ("*", "s3:*", "sagemaker:*", "iam:*") for a in actions)
            for resource in _resources(statement):
                if any(a.startswith("s3:") for a in actions) and statement["Effect"] == "Allow":
                    assert resource != "*" and not resource.startswith("arn:aws:s3:::*")


def test_new_domain_sits_in_the_project_vpc_private_subnets(studio_template: Template) -> None:
    _, domain_resource = only(studio_template, "AWS::SageMaker::Domain")
    # A kept domain would keep ENIs in the project subnets and block VPC deletion.
    assert domain_resource["DeletionPolicy"] == "Delete"
    domain = domain_resource["Properties"]
    assert domain["AuthMode"] == "IAM"
    assert domain["AppNetworkAccessType"] == "VpcOnly"
    assert render(domain["VpcId"]).startswith("${MLflowVpcStack:PublishOutputRefNetworkVpc")
    assert len(domain["SubnetIds"]) == 2
    assert all("privateSubnet" in render(s) for s in domain["SubnetIds"])
    role = "${%s.Arn}" % _role_id(studio_template)
    assert render(domain["DefaultUserSettings"]["ExecutionRole"]) == role
    profile = props(studio_template, "AWS::SageMaker::UserProfile")
    assert profile["UserProfileName"] == "mlflow-user"
    assert render(profile["DomainId"]).endswith(".DomainId}")
    assert render(profile["UserSettings"]["ExecutionRole"]) == role
    assert all(r.get("CidrIp") is None for r in ingress_rules(studio_template))


@pytest.fixture(scope="module")
def existing_domain_template() -> Template:
    return synth_templates(
        sagemaker_domain_id="d-abcdef123456", user_profile_name="alice", allowed_instance_types="ml.g5.xlarge"
    )[names.STUDIO_STACK]


def test_allowed_instance_types_follow_configuration(existing_domain_template: Template) -> None:
    statement = statement_by_sid(existing_domain_template, "TrainAndHostOnAllowedInstanceTypes")
    assert statement["Condition"]["ForAllValues:StringEquals"] == {"sagemaker:InstanceTypes": ["ml.g5.xlarge"]}


def test_existing_domain_gets_only_a_profile(existing_domain_template: Template) -> None:
    assert not resources(existing_domain_template, "AWS::SageMaker::Domain")
    assert not resources(existing_domain_template, "AWS::EC2::SecurityGroup")
    profile = props(existing_domain_template, "AWS::SageMaker::UserProfile")
    assert profile["DomainId"] == "d-abcdef123456"
    assert profile["UserProfileName"] == "alice"
    studio = statement_by_sid(existing_domain_template, "UseStudioInOwnDomain")
    assert f"{ARN}:sagemaker:{REGION_ACCOUNT}:app/d-abcdef123456/*" in _resources(studio)


def test_serving_image_build_uses_the_pinned_mlflow(studio_template: Template) -> None:
    project = props(studio_template, "AWS::CodeBuild::Project")
    assert project["Name"] == names.SERVING_IMAGE_BUILD_PROJECT
    assert project["Environment"]["PrivilegedMode"] is True
    variables = {v["Name"]: v["Value"] for v in project["Environment"]["EnvironmentVariables"]}
    assert variables == {
        "MLFLOW_VERSION": pinned_mlflow_version(),
        "REPOSITORY": "mlflow-pyfunc",
        "BASE_IMAGE_MIRROR": "public.ecr.aws/docker/library",
    }
    buildspec = json.loads(project["Source"]["BuildSpec"])["phases"]
    assert buildspec["install"]["commands"] == ['pip install --quiet "mlflow==${MLFLOW_VERSION}"']
    # What the build command does is run for real in test_serving_image_buildspec.py.
    (command,) = buildspec["build"]["commands"]
    assert 'mlflow sagemaker build-and-push-container --build --push --container "$REPOSITORY"' in command
    repository = props(studio_template, "AWS::ECR::Repository")
    assert repository["RepositoryName"] == "mlflow-pyfunc"
    assert repository["ImageScanningConfiguration"] == {"ScanOnPush": True}


def test_serving_image_tags_cannot_be_replaced(studio_template: Template) -> None:
    assert props(studio_template, "AWS::ECR::Repository")["ImageTagMutability"] == "IMMUTABLE"


def test_deploy_builds_the_image_for_the_pinned_version(studio_template: Template) -> None:
    (build_id, build), = resources(studio_template, "Custom::ServingImageBuild").items()
    project_id, _ = only(studio_template, "AWS::CodeBuild::Project")
    properties = build["Properties"]
    # A new version in docker/mlflow/requirements.txt changes the properties: CloudFormation
    # then sends an Update, which starts a build; nothing else does.
    assert properties["MlflowVersion"] == pinned_mlflow_version()
    assert properties["ProjectName"] == {"Ref": project_id}
    assert project_id in build["DependsOn"]
    assert build["Properties"]["ServiceTimeout"] == "3300"
    functions = [
        f for f in resources(studio_template, "AWS::Lambda::Function").values()
        if f["Properties"].get("Handler", "").startswith("index.")
    ]  # fmt: skip
    assert sorted(f["Properties"]["Handler"] for f in functions) == ["index.is_complete", "index.on_event"]
    assert {f["Properties"]["Runtime"] for f in functions} == {"python3.14"}
    # Their role may start and watch this one project, and write its own logs.
    (trigger,) = {json.dumps(f["Properties"]["Role"]) for f in functions}
    role_id = json.loads(trigger)["Fn::GetAtt"][0]
    statements = [
        s for p in resources(studio_template, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in p["Properties"]["Roles"] for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]  # fmt: skip
    codebuild = [s for s in statements if any(a.startswith("codebuild:") for a in _actions(s))]
    assert len(codebuild) == 1 and _actions(codebuild[0]) == {"codebuild:StartBuild", "codebuild:BatchGetBuilds"}
    assert _resources(codebuild[0]) == {"${%s.Arn}" % project_id}
    assert all(a.startswith(("codebuild:", "logs:")) for s in statements for a in _actions(s))
    assert "ManagedPolicyArns" not in studio_template["Resources"][role_id]["Properties"]


def test_studio_users_cannot_start_the_privileged_build(studio_template: Template) -> None:
    """StartBuild accepts a buildspec override: a user who may call it can push any image."""
    for statement in _workflow_policy(studio_template):
        assert not any(a.startswith("codebuild:") for a in _actions(statement)), statement.get("Sid")


def test_build_role_pushes_only_to_the_serving_repository(studio_template: Template) -> None:
    repository_id, _ = only(studio_template, "AWS::ECR::Repository")
    build_policies = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for p in resources(studio_template, "AWS::IAM::Policy").values()
        if any("ServingImageProjectRole" in json.dumps(r) for r in p["Properties"]["Roles"])
    ]
    statements = [s for policy in build_policies for s in policy]
    for statement in statements:
        if any(a.startswith("ecr:") and a != "ecr:GetAuthorizationToken" for a in _actions(statement)):
            assert _resources(statement) == {"${%s.Arn}" % repository_id}
    assert any("ecr:PutImage" in _actions(s) for s in statements)
    # Newer Docker clients read the manifest back while pushing.
    assert any("ecr:BatchGetImage" in _actions(s) for s in statements)


def test_outputs_are_published_under_stable_keys(studio_template: Template) -> None:
    assert set(studio_template["Outputs"]) >= {
        names.OUTPUT_STUDIO_ROLE, names.OUTPUT_DOMAIN_ID, names.OUTPUT_USER_PROFILE, names.OUTPUT_IMAGE_BUILD_PROJECT,
    }
