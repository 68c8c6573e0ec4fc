"""SageMakerStudioUserStack: per-profile roles and MLflow logins, workload roles, Studio domain, image build."""

import json
from typing import Any

import pytest

from stacks import names
from stacks.mlflow_version import pinned_mlflow_version
from stacks.sagemaker_studio_user_stack import LEGACY_PROFILE_LOGICAL_ID
from tests.stacks.helpers import (
    Template,
    as_list,
    egress_rules,
    ingress_rules,
    only,
    policy_statements,
    props,
    ref_id,
    render,
    resources,
    statement_actions,
)
from tests.synth import synth_templates

ARN = "arn:${AWS::Partition}"
REGION_ACCOUNT = "${AWS::Region}:${AWS::AccountId}"


def _resources(statement: dict[str, Any]) -> set[str]:
    return {render(r) for r in as_list(statement["Resource"])}


def _actions(statement: dict[str, Any]) -> set[str]:
    return set(statement_actions(statement))


def _tags(template: Template, role_id: str) -> dict[str, Any]:
    return {t["Key"]: t["Value"] for t in template["Resources"][role_id]["Properties"].get("Tags", [])}


# The default profile's (cdk.json's mlflow-user) SageMaker names and bucket keys.
PREFIX = names.workflow_name_prefix("mlflow-user")


def _sagemaker_roles(template: Template) -> dict[str, dict[str, Any]]:
    return {
        logical_id: role
        for logical_id, role in resources(template, "AWS::IAM::Role").items()
        if role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"]
        == {"Service": "sagemaker.amazonaws.com"}
    }


def _role_id(template: Template, fragment: str) -> str:
    (role_id,) = [logical_id for logical_id in _sagemaker_roles(template) if fragment in logical_id]
    return role_id


def _inline_statements(template: Template, role_id: str) -> list[dict[str, Any]]:
    """Statements of the AWS::IAM::Policy resources attached to one role."""
    return [
        s
        for p in resources(template, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in p["Properties"]["Roles"]
        for s in p["Properties"]["PolicyDocument"]["Statement"]
    ]


def _sid(statements: list[dict[str, Any]], sid: str) -> dict[str, Any]:
    (statement,) = [s for s in statements if s.get("Sid") == sid]
    return statement


def _managed(template: Template, role_id: str) -> list[str]:
    return [render(arn) for arn in template["Resources"][role_id]["Properties"].get("ManagedPolicyArns", [])]


# --- the execution role of a profile (shared mode) -----------------------------


@pytest.fixture(scope="module")
def execution_role(studio_template: Template) -> str:
    return _role_id(studio_template, "ExecutionRole")


@pytest.fixture(scope="module")
def workflow(studio_template: Template, execution_role: str) -> list[dict[str, Any]]:
    return _inline_statements(studio_template, execution_role)


def test_role_is_assumed_by_sagemaker_and_has_no_aws_managed_policy(
    studio_template: Template, execution_role: str
) -> None:
    (managed,) = _managed(studio_template, execution_role)
    assert managed.startswith("${MLflowVpcStack:") and "StoragemlflowuserWorkflowAccess" in managed
    assert "Policies" not in studio_template["Resources"][execution_role]["Properties"]


def test_shared_mode_roles_read_only_the_shared_credentials_secret(studio_template: Template) -> None:
    secret_statements = [
        s for s in policy_statements(studio_template) if any("secretsmanager" in a for a in _actions(s))
    ]
    assert secret_statements and all(
        _resources(s) == {"${MLflowVpcStack:PublishOutputRefCredentialsSecret40F8BB41776D9B3F}"}
        for s in secret_statements
    )
    assert all(
        _actions(s) == {"secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"} for s in secret_statements
    )
    # Read by the execution role and the training role: not the serving role.
    readers = {
        ref_id(role)
        for p in resources(studio_template, "AWS::IAM::Policy").values()
        if any(s in secret_statements for s in p["Properties"]["PolicyDocument"]["Statement"])
        for role in p["Properties"]["Roles"]
    }
    assert readers == {_role_id(studio_template, "ExecutionRole"), _role_id(studio_template, "TrainingRole")}


def test_roles_are_tagged_with_their_secret_and_workload_roles(studio_template: Template, execution_role: str) -> None:
    """The lab finds its login and the roles to hand SageMaker through these tags."""
    training = _role_id(studio_template, "TrainingRole")
    serving = _role_id(studio_template, "UsermlflowuserServingRole")
    assert _tags(studio_template, execution_role) == {
        names.ROLE_TAG_CREDENTIALS_SECRET: "mlflow-server-credentials",
        names.ROLE_TAG_TRAINING_ROLE: {"Fn::GetAtt": [training, "Arn"]},
        names.ROLE_TAG_SERVING_ROLE: {"Fn::GetAtt": [serving, "Arn"]},
        names.ROLE_TAG_NAME_PREFIX: PREFIX,
    }
    assert _tags(studio_template, training) == {names.ROLE_TAG_CREDENTIALS_SECRET: "mlflow-server-credentials"}
    assert _tags(studio_template, serving) == {}


def test_configured_secret_name_reaches_the_tags() -> None:
    template = synth_templates(credentials_secret_name="team-a/mlflow")[names.STUDIO_STACK]
    tagged = {_tags(template, role).get(names.ROLE_TAG_CREDENTIALS_SECRET) for role in _sagemaker_roles(template)}
    assert tagged == {"team-a/mlflow", None}  # None: the serving roles and the domain's default role


def test_role_reads_stack_outputs_parameters_and_its_own_tags(
    workflow: list[dict[str, Any]], execution_role: str
) -> None:
    stacks_statement = _sid(workflow, "ReadStackOutputs")
    assert _actions(stacks_statement) == {"cloudformation:DescribeStacks"}
    assert _resources(stacks_statement) == {
        f"{ARN}:cloudformation:{REGION_ACCOUNT}:stack/{names.VPC_STACK}/*",
        f"{ARN}:cloudformation:{REGION_ACCOUNT}:stack/{names.GATEWAY_STACK}/*",
        f"{ARN}:cloudformation:{REGION_ACCOUNT}:stack/{names.STUDIO_STACK}/*",
    }
    parameters = _sid(workflow, "ReadMlflowParameters")
    assert _actions(parameters) == {"ssm:GetParameter", "ssm:GetParameters"}
    assert _resources(parameters) == {f"{ARN}:ssm:{REGION_ACCOUNT}:parameter/mlflow/*"}
    own = _sid(workflow, "ReadOwnRole")
    assert _actions(own) == {"iam:GetRole"} and _resources(own) == {"${%s.Arn}" % execution_role}


def test_sagemaker_actions_are_limited_to_the_profiles_prefixed_resources(workflow: list[dict[str, Any]]) -> None:
    statement = _sid(workflow, "ManageWorkflowSageMakerResources")
    assert {
        "sagemaker:DescribeTrainingJob",
        "sagemaker:CreateModel", "sagemaker:DeleteModel",
        "sagemaker:DeleteEndpointConfig",
        "sagemaker:CreateEndpoint", "sagemaker:DescribeEndpoint", "sagemaker:DeleteEndpoint",
        "sagemaker:InvokeEndpoint",
    } <= _actions(statement)  # fmt: skip
    assert _resources(statement) == {
        f"{ARN}:sagemaker:{REGION_ACCOUNT}:{kind}/{PREFIX}*"
        for kind in ("training-job", "model", "endpoint-config", "endpoint")
    }
    # The registry's endpoints: look and call only.
    registry = _sid(workflow, "UseRegistryDeployments")
    assert _actions(registry) == {
        "sagemaker:DescribeModel", "sagemaker:DescribeEndpointConfig", "sagemaker:DescribeEndpoint",
        "sagemaker:InvokeEndpoint", "sagemaker:ListTags",
    }  # fmt: skip


def test_instances_are_chosen_only_from_the_allowed_types(studio_template: Template, workflow: list) -> None:
    statement = _sid(workflow, "TrainAndHostOnAllowedInstanceTypes")
    assert _actions(statement) == {"sagemaker:CreateTrainingJob", "sagemaker:CreateEndpointConfig"}
    assert _resources(statement) == {
        f"{ARN}:sagemaker:{REGION_ACCOUNT}:{kind}/{PREFIX}*" for kind in ("training-job", "endpoint-config")
    }
    assert statement["Condition"] == {
        "ForAllValues:StringEquals": {"sagemaker:InstanceTypes": ["ml.m5.large", "ml.m5.xlarge", "ml.c5.xlarge"]},
        "Null": {"sagemaker:InstanceTypes": "false"},
    }
    # No other statement lets any role create either one without the condition.
    for other in policy_statements(studio_template):
        if other is not statement and other["Effect"] == "Allow":
            assert not _actions(other) & _actions(statement), other.get("Sid")


def test_passes_the_workload_roles_and_never_itself(
    studio_template: Template, workflow: list[dict[str, Any]], execution_role: str
) -> None:
    passes = [s for s in workflow if "iam:PassRole" in _actions(s)]
    assert [s["Sid"] for s in passes] == ["PassWorkloadRolesToSageMaker"]
    assert _resources(passes[0]) == {
        "${%s.Arn}" % _role_id(studio_template, "TrainingRole"),
        "${%s.Arn}" % _role_id(studio_template, "UsermlflowuserServingRole"),
    }
    assert passes[0]["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    assert "${%s.Arn}" % execution_role not in _resources(passes[0])


def test_serving_image_check_is_scoped_to_its_repository(studio_template: Template, workflow: list) -> None:
    statement = _sid(workflow, "CheckServingImageExists")
    repository_id, _ = only(studio_template, "AWS::ECR::Repository")
    assert _actions(statement) == {"ecr:DescribeImages"}
    assert _resources(statement) == {"${%s.Arn}" % repository_id}
    # SageMaker pulls images with the workload roles; the Studio role pulls none.
    assert not [s for s in workflow if "ecr:BatchGetImage" in _actions(s)]


def test_unscoped_actions_are_only_reads_and_list_calls(studio_template: Template) -> None:
    for statement in policy_statements(studio_template):
        if "*" in _resources(statement) and statement["Effect"] == "Allow":
            for action in _actions(statement):
                assert action.split(":")[1].startswith(("List", "GetAuthorizationToken", "PutMetricData")), action
        if "cloudwatch:PutMetricData" in _actions(statement):
            assert statement["Condition"] == {"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}}


def test_no_wildcard_s3_or_secret_listing(studio_template: Template, vpc_template: Template) -> None:
    for template in (studio_template, vpc_template):
        for statement in policy_statements(template):
            actions = _actions(statement)
            assert "secretsmanager:ListSecrets" not in actions
            assert not any(a in ("*", "s3:*", "sagemaker:*", "iam:*") for a in actions)
            for resource in _resources(statement):
                if any(a.startswith("s3:") for a in actions) and statement["Effect"] == "Allow":
                    assert resource != "*" and not resource.startswith("arn:aws:s3:::*")


# --- artifact bucket: who may touch which keys ---------------------------------------


def _storage_policy(vpc_template: Template, fragment: str) -> dict[str, dict[str, Any]]:
    (policy,) = [
        p for logical_id, p in resources(vpc_template, "AWS::IAM::ManagedPolicy").items() if fragment in logical_id
    ]
    return {s["Sid"]: s for s in policy["Properties"]["PolicyDocument"]["Statement"]}


def _bucket(vpc_template: Template) -> str:
    (bucket_id,) = [b for b in resources(vpc_template, "AWS::S3::Bucket") if "Artifacts" in b]
    return "${%s.Arn}" % bucket_id


DENIED_ON_MLFLOW_ARTIFACTS = {
    "s3:GetObject*", "s3:PutObject*", "s3:DeleteObject*", "s3:RestoreObject", "s3:AbortMultipartUpload",
}  # fmt: skip


def _assert_denies_mlflow_artifacts(statements: dict[str, dict[str, Any]], bucket: str) -> None:
    deny = statements["NoDirectMlflowArtifactAccess"]
    assert deny["Effect"] == "Deny"
    assert _actions(deny) == DENIED_ON_MLFLOW_ARTIFACTS
    assert _resources(deny) == {f"{bucket}/mlflow-artifacts/*"}


def test_studio_uses_its_profiles_job_code_and_model_data_keys_but_not_mlflows_artifacts(
    vpc_template: Template,
) -> None:
    statements = _storage_policy(vpc_template, "mlflowuserWorkflowAccess")
    bucket = _bucket(vpc_template)
    assert _actions(statements["FindArtifactBucket"]) == {"s3:GetBucketLocation"}
    assert _actions(statements["ListOwnTrainingJobKeys"]) == {"s3:ListBucket"}
    assert _resources(statements["ListOwnTrainingJobKeys"]) == {bucket}
    assert statements["ListOwnTrainingJobKeys"]["Condition"] == {"StringLike": {"s3:prefix": [f"sagemaker/{PREFIX}*"]}}
    assert _actions(statements["ReadWriteOwnWorkflowObjects"]) == {
        "s3:GetObject", "s3:PutObject", "s3:PutObjectTagging", "s3:DeleteObject", "s3:AbortMultipartUpload",
    }  # fmt: skip
    assert _resources(statements["ReadWriteOwnWorkflowObjects"]) == {
        f"{bucket}/{PREFIX}*/model.tar.gz",
        f"{bucket}/sagemaker/{PREFIX}*",
    }
    _assert_denies_mlflow_artifacts(statements, bucket)


def test_training_jobs_read_their_code_and_write_their_output_only(vpc_template: Template) -> None:
    statements = _storage_policy(vpc_template, "mlflowuserTrainingAccess")
    bucket = _bucket(vpc_template)
    assert set(statements) == {"ReadCodeWriteOutput", "NoDirectMlflowArtifactAccess"}
    assert _actions(statements["ReadCodeWriteOutput"]) == {"s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"}
    assert _resources(statements["ReadCodeWriteOutput"]) == {f"{bucket}/sagemaker/{PREFIX}*"}
    _assert_denies_mlflow_artifacts(statements, bucket)


def test_models_read_the_model_data_mlflow_uploaded_only(vpc_template: Template) -> None:
    statements = _storage_policy(vpc_template, "mlflowuserServingAccess")
    bucket = _bucket(vpc_template)
    assert set(statements) == {"ReadModelData", "NoDirectMlflowArtifactAccess"}
    assert _actions(statements["ReadModelData"]) == {"s3:GetObject"}
    assert _resources(statements["ReadModelData"]) == {f"{bucket}/{PREFIX}*/model.tar.gz"}
    _assert_denies_mlflow_artifacts(statements, bucket)
    # The registry endpoints' policy: the Deny only (their copies come with model_deployments).
    registry = _storage_policy(vpc_template, "StorageServingAccess")
    assert set(registry) == {"NoDirectMlflowArtifactAccess"}


# --- workload roles ----------------------------------------------------------------


def test_training_role_holds_the_login_job_keys_images_and_logs(studio_template: Template) -> None:
    role = _role_id(studio_template, "TrainingRole")
    (managed,) = _managed(studio_template, role)
    assert "StoragemlflowuserTrainingAccess" in managed
    statements = _inline_statements(studio_template, role)
    assert {s["Sid"] for s in statements} == {
        "ReadMlflowCredentials", "ReadStackOutputs", "ReadMlflowParameters", "ReadOwnRole",
        "PullImages", "RegistryLogin", "WriteLogs", "WriteMetrics",
    }  # fmt: skip
    assert _resources(_sid(statements, "ReadOwnRole")) == {"${%s.Arn}" % role}
    assert _resources(_sid(statements, "PullImages")) == {
        f"{ARN}:ecr:${{AWS::Region}}:*:repository/sagemaker-scikit-learn"
    }
    assert _resources(_sid(statements, "WriteLogs")) == {
        f"{ARN}:logs:{REGION_ACCOUNT}:log-group:/aws/sagemaker/TrainingJobs*"
    }
    assert not [s for s in statements if "iam:PassRole" in _actions(s)]


@pytest.mark.parametrize(("fragment", "policy"), [("UsermlflowuserServingRole", "StoragemlflowuserServingAccess"),
                                                 ("ServingRole", "StorageServingAccess")])  # fmt: skip
def test_serving_roles_hold_no_mlflow_login(studio_template: Template, fragment: str, policy: str) -> None:
    """The profile's (the notebook's endpoints) and the stack's (the registry's endpoints, its output)."""
    (role,) = [r for r in _sagemaker_roles(studio_template) if "ServingRole" in r and r.startswith(fragment)]
    (managed,) = _managed(studio_template, role)
    assert f"PublishOutputRef{policy}" in managed, managed
    statements = _inline_statements(studio_template, role)
    assert {s["Sid"] for s in statements} == {"PullImages", "RegistryLogin", "WriteLogs", "WriteMetrics"}
    assert not [s for s in statements if any(a.split(":")[0] in ("secretsmanager", "ssm", "iam") for a in _actions(s))]
    repository_id, _ = only(studio_template, "AWS::ECR::Repository")
    assert _resources(_sid(statements, "PullImages")) == {"${%s.Arn}" % repository_id}
    endpoints = PREFIX + "*" if fragment.startswith("User") else names.MODEL_DEPLOYMENT_NAMES
    assert _resources(_sid(statements, "WriteLogs")) == {
        f"{ARN}:logs:{REGION_ACCOUNT}:log-group:/aws/sagemaker/Endpoints/{endpoints}"
    }
    if fragment == "ServingRole":
        assert studio_template["Outputs"][names.OUTPUT_SERVING_ROLE]["Value"] == {"Fn::GetAtt": [role, "Arn"]}


# --- domain and profiles -------------------------------------------------------------


def test_new_domain_sits_in_the_project_vpc_private_subnets(studio_template: Template, execution_role: str) -> None:
    _, domain_resource = only(studio_template, "AWS::SageMaker::Domain")
    # A kept domain would keep ENIs in the project subnets and block VPC deletion.
    assert domain_resource["DeletionPolicy"] == "Delete"
    domain = domain_resource["Properties"]
    assert domain["DomainName"] == names.STUDIO_DOMAIN_NAME
    assert domain["AuthMode"] == "IAM"
    assert domain["AppNetworkAccessType"] == "VpcOnly"
    assert render(domain["VpcId"]).startswith("${MLflowVpcStack:PublishOutputRefNetworkVpc")
    assert len(domain["SubnetIds"]) == 2
    assert all("privateSubnet" in render(s) for s in domain["SubnetIds"])
    # Profiles made outside the stack get a role without any permission (no MLflow login).
    default_role = ref_id(domain["DefaultUserSettings"]["ExecutionRole"])
    assert ref_id(domain["DefaultSpaceSettings"]["ExecutionRole"]) == default_role
    assert default_role != execution_role
    assert not _inline_statements(studio_template, default_role) and not _managed(studio_template, default_role)
    assert "Policies" not in studio_template["Resources"][default_role]["Properties"]

    profile_id, profile_resource = only(studio_template, "AWS::SageMaker::UserProfile")
    profile = profile_resource["Properties"]
    assert profile["UserProfileName"] == "mlflow-user"
    assert render(profile["DomainId"]).endswith(".DomainId}")
    assert render(profile["UserSettings"]["ExecutionRole"]) == "${%s.Arn}" % execution_role
    # The logical id of the profile before user_profiles became a list: updated in place.
    assert profile_id == LEGACY_PROFILE_LOGICAL_ID
    assert all(r.get("CidrIp") is None for r in ingress_rules(studio_template))


@pytest.fixture(scope="module")
def existing_domain_template() -> Template:
    return synth_templates(
        sagemaker_domain_id="d-abcdef123456", user_profiles="alice,bob", allowed_instance_types="ml.g5.xlarge"
    )[names.STUDIO_STACK]


def test_allowed_instance_types_follow_configuration(existing_domain_template: Template) -> None:
    for profile in ("alice", "bob"):
        role = _role_id(existing_domain_template, f"User{profile}ExecutionRole")
        statement = _sid(_inline_statements(existing_domain_template, role), "TrainAndHostOnAllowedInstanceTypes")
        assert statement["Condition"]["ForAllValues:StringEquals"] == {"sagemaker:InstanceTypes": ["ml.g5.xlarge"]}


def test_existing_domain_gets_only_profiles_each_with_its_own_roles(existing_domain_template: Template) -> None:
    template = existing_domain_template
    assert not resources(template, "AWS::SageMaker::Domain")
    assert not resources(template, "AWS::EC2::SecurityGroup")
    profiles = {
        p["Properties"]["UserProfileName"]: p["Properties"]
        for p in resources(template, "AWS::SageMaker::UserProfile").values()
    }
    assert set(profiles) == {"alice", "bob"}
    assert {p["DomainId"] for p in profiles.values()} == {"d-abcdef123456"}
    roles = {name: ref_id(p["UserSettings"]["ExecutionRole"]) for name, p in profiles.items()}
    assert roles["alice"] != roles["bob"]
    for name, role in roles.items():
        assert f"User{name}" in role
        studio = _sid(_inline_statements(template, role), "ReadStudioDomain")
        assert f"{ARN}:sagemaker:{REGION_ACCOUNT}:app/d-abcdef123456/*" in _resources(studio)
        tags = _tags(template, role)
        assert tags[names.ROLE_TAG_TRAINING_ROLE] == {
            "Fn::GetAtt": [_role_id(template, f"User{name}TrainingRole"), "Arn"]
        }
        assert tags[names.ROLE_TAG_SERVING_ROLE] == {
            "Fn::GetAtt": [_role_id(template, f"User{name}ServingRole"), "Arn"]
        }
        assert tags[names.ROLE_TAG_NAME_PREFIX] == names.workflow_name_prefix(name)
    assert template["Outputs"][names.OUTPUT_USER_PROFILES]["Value"] == "alice,bob"
    # A serving role per profile, and the registry endpoints' one.
    assert len([r for r in _sagemaker_roles(template) if "ServingRole" in r]) == 3


# --- accounts mode: one MLflow user per profile ---------------------------------------


@pytest.fixture(scope="module")
def accounts_studio(accounts_templates: dict[str, Template]) -> Template:
    return accounts_templates[names.STUDIO_STACK]


def _user_secrets(template: Template) -> dict[str, tuple[str, dict[str, Any]]]:
    return {
        json.loads(s["Properties"]["GenerateSecretString"]["SecretStringTemplate"])["username"]: (logical_id, s)
        for logical_id, s in resources(template, "AWS::SecretsManager::Secret").items()
    }


def test_each_profile_gets_its_own_generated_login(accounts_studio: Template) -> None:
    secrets = _user_secrets(accounts_studio)
    assert set(secrets) == {"alice", "bob"}
    for profile, (_, secret) in secrets.items():
        properties = secret["Properties"]
        assert properties["Name"] == f"mlflow-server-credentials/users/{profile}/login"
        assert properties["GenerateSecretString"]["GenerateStringKey"] == "password"
        assert properties["GenerateSecretString"]["PasswordLength"] >= 32
        assert "SecretString" not in properties
        assert secret["DeletionPolicy"] == "Retain"


def test_only_the_profiles_roles_read_its_login(accounts_password_templates: dict[str, Template]) -> None:
    """IAM sign-in off (tests/stacks/test_iam_sign_in.py: on, the roles read no login)."""
    accounts_studio = accounts_password_templates[names.STUDIO_STACK]
    secrets = _user_secrets(accounts_studio)
    (provisioner_role,) = [
        r for r in resources(accounts_studio, "AWS::IAM::Role") if r.startswith("MlflowAccountsRole")
    ]
    for profile, (secret_id, _) in secrets.items():
        execution, training = (
            _role_id(accounts_studio, f"User{profile}{kind}") for kind in ("ExecutionRole", "TrainingRole")
        )
        for role in (execution, training):
            read = _sid(_inline_statements(accounts_studio, role), "ReadMlflowCredentials")
            assert read["Resource"] == {"Ref": secret_id}
            assert _tags(accounts_studio, role)[names.ROLE_TAG_CREDENTIALS_SECRET] == (
                f"mlflow-server-credentials/users/{profile}/login"
            )
        (policy,) = [
            p["Properties"]
            for p in resources(accounts_studio, "AWS::SecretsManager::ResourcePolicy").values()
            if p["Properties"]["SecretId"] == {"Ref": secret_id}
        ]
        (deny,) = policy["ResourcePolicy"]["Statement"]
        assert (deny["Effect"], deny["Principal"], deny["Action"]) == (
            "Deny",
            {"AWS": "*"},
            "secretsmanager:GetSecretValue",
        )
        allowed = {ref_id(arn) for arn in deny["Condition"]["StringNotEquals"]["aws:PrincipalArn"]}
        assert allowed == {execution, training, provisioner_role}
    # Nothing in the stack reads the admin login but the provisioner.
    admin_readers = [
        s for s in policy_statements(accounts_studio) if "CredentialsSecret" in json.dumps(s.get("Resource"))
    ]
    assert [s["Sid"] for s in admin_readers] == ["ReadAdminLogin"]


def test_accounts_are_made_by_the_provisioner_from_the_profiles_secret(accounts_studio: Template) -> None:
    secrets = _user_secrets(accounts_studio)
    accounts = resources(accounts_studio, "Custom::MlflowAccount")
    assert {a["Properties"]["Username"]: a["Properties"]["UserSecretArn"] for a in accounts.values()} == {
        profile: {"Ref": secret_id} for profile, (secret_id, _) in secrets.items()
    }
    # The accounts' own provider framework (the serving image build has another).
    (framework_id,) = [
        logical_id
        for logical_id, f in resources(accounts_studio, "AWS::Lambda::Function").items()
        if f["Properties"]["Handler"] == "framework.onEvent" and logical_id.startswith("MlflowAccounts")
    ]
    for account in accounts.values():
        assert account["Properties"]["ServiceToken"] == {"Fn::GetAtt": [framework_id, "Arn"]}
        # Runs once the provisioner may reach the ALB; deletes the MLflow user with the stack.
        assert any("MlflowAccountsSecurityGroup" in d for d in account["DependsOn"])
        assert account["DeletionPolicy"] == "Delete"


def test_provisioner_runs_in_the_vpc_and_reaches_only_the_alb_and_aws_apis(accounts_studio: Template) -> None:
    ((function_id, function),) = [
        (logical_id, f)
        for logical_id, f in resources(accounts_studio, "AWS::Lambda::Function").items()
        if "ADMIN_SECRET_ARN" in f["Properties"].get("Environment", {}).get("Variables", {})
    ]
    properties = function["Properties"]
    environment = properties["Environment"]["Variables"]
    # Without a custom domain the listener is plain HTTP inside the VPC: no TLS name to verify.
    assert set(environment) == {"ADMIN_SECRET_ARN", "MLFLOW_URL"}
    assert "CredentialsSecret" in render(environment["ADMIN_SECRET_ARN"])
    assert render(environment["MLFLOW_URL"]).startswith("http://${MLflowVpcStack:")
    assert "TrackingLoadBalancer" in render(environment["MLFLOW_URL"]) and "DNSName" in render(
        environment["MLFLOW_URL"]
    )
    assert all("privateSubnet" in render(s) for s in properties["VpcConfig"]["SubnetIds"])
    (group,) = properties["VpcConfig"]["SecurityGroupIds"]
    group_id = ref_id(group)
    egress = [
        r for r in egress_rules(accounts_studio)
        if ref_id(r.get("GroupId", {"Ref": group_id})) == group_id and r.get("CidrIp") != "255.255.255.255/32"
    ]  # fmt: skip
    own_group = accounts_studio["Resources"][group_id]["Properties"]
    assert {(r["FromPort"], r.get("CidrIp")) for r in own_group["SecurityGroupEgress"]} == {(443, "0.0.0.0/0")}
    to_alb = [r for r in egress if "DestinationSecurityGroupId" in r]
    assert [
        (r["FromPort"], "LoadBalancerSecurityGroup" in render(r["DestinationSecurityGroupId"])) for r in to_alb
    ] == [(80, True)]
    alb_ingress = [r for r in ingress_rules(accounts_studio) if "LoadBalancerSecurityGroup" in render(r["GroupId"])]
    assert [(ref_id(r["SourceSecurityGroupId"]), r["FromPort"], r["ToPort"]) for r in alb_ingress] == [
        (group_id, 80, 80)
    ]
    # Its role: its logs, its ENIs, the admin login and the profiles' logins, nothing else.
    role_id = ref_id(properties["Role"])
    statements = [
        s
        for policy in accounts_studio["Resources"][role_id]["Properties"]["Policies"]
        for s in policy["PolicyDocument"]["Statement"]
    ] + _inline_statements(accounts_studio, role_id)
    assert {s["Sid"] for s in statements} == {
        "WriteOwnLogs",
        "ManageVpcNetworkInterfaces",
        "ReadAdminLogin",
        "ReadUserLogins",
    }
    enis = _sid(statements, "ManageVpcNetworkInterfaces")
    assert _resources(enis) == {"*"} and all(
        a.startswith("ec2:") and a.endswith(("NetworkInterface", "NetworkInterfaces", "Subnets", "IpAddresses"))
        for a in _actions(enis)
    )
    assert {render(r) for r in as_list(_sid(statements, "ReadUserLogins")["Resource"])} == {
        "${%s}" % secret_id for secret_id, _ in _user_secrets(accounts_studio).values()
    }
    assert properties["Runtime"].startswith("python3.")
    assert function_id.startswith("MlflowAccountsFunction")


def test_shared_mode_has_no_accounts(studio_template: Template) -> None:
    assert not resources(studio_template, "Custom::MlflowAccount")
    assert not resources(studio_template, "AWS::SecretsManager::Secret")
    assert not [f for f in resources(studio_template, "AWS::Lambda::Function") if f.startswith("MlflowAccounts")]


# --- serving image build ------------------------------------------------------------


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
    ((build_id, build),) = resources(studio_template, "Custom::ServingImageBuild").items()
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
    for role in _sagemaker_roles(studio_template):
        for statement in _inline_statements(studio_template, role):
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
    assert set(studio_template["Outputs"]) == {
        names.OUTPUT_DOMAIN_ID, names.OUTPUT_USER_PROFILES, names.OUTPUT_SERVING_ROLE, names.OUTPUT_IMAGE_BUILD_PROJECT,
        names.OUTPUT_STUDIO_LAUNCH_POLICIES,
    }  # fmt: skip
    assert studio_template["Outputs"][names.OUTPUT_USER_PROFILES]["Value"] == "mlflow-user"
    # One launch policy per profile, by name: {"mlflow-user": <its ARN>}.
    (policy,) = resources(studio_template, "AWS::IAM::ManagedPolicy")
    launch = render(studio_template["Outputs"][names.OUTPUT_STUDIO_LAUNCH_POLICIES]["Value"])
    assert launch == '{"mlflow-user":"${%s}"}' % policy, launch
