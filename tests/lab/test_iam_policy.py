"""The test-side IAM evaluator and intrinsic resolver, checked on small hand-written cases."""

from __future__ import annotations

import pytest

from stacks import names
from tests.lab.cfn_policies import AppResolver, Environment, Unresolvable, role_statements
from tests.lab.iam_policy import Request, evaluate

SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:mlflow-server-credentials-AbCdEf"
POLICY = [
    {"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": SECRET},
    {"Effect": "Allow", "Action": ["s3:GetObject", "s3:Put*"], "Resource": "arn:aws:s3:::bucket/mlflow-*"},
    {"Effect": "Allow", "Action": "sagemaker:List*", "Resource": "*"},
    {
        "Effect": "Allow",
        "Action": "iam:PassRole",
        "Resource": "arn:aws:iam::123456789012:role/studio",
        "Condition": {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
    },
    {
        "Effect": "Allow",
        "Action": "cloudwatch:PutMetricData",
        "Resource": "*",
        "Condition": {"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}},
    },
    {"Effect": "Deny", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::bucket/mlflow-locked/*"},
]


@pytest.mark.parametrize(
    ("action", "resource", "context", "decision"),
    [
        ("secretsmanager:GetSecretValue", SECRET, {}, "Allow"),
        ("SecretsManager:getsecretvalue", SECRET, {}, "Allow"),  # actions ignore case
        ("secretsmanager:GetSecretValue", SECRET.replace("mlflow-server", "other"), {}, "ImplicitDeny"),
        ("secretsmanager:PutSecretValue", SECRET, {}, "ImplicitDeny"),
        ("s3:PutObject", "arn:aws:s3:::bucket/mlflow-artifacts/1/model.pkl", {}, "Allow"),
        ("s3:PutObjectTagging", "arn:aws:s3:::bucket/mlflow-x/model.tar.gz", {}, "Allow"),
        ("s3:GetObject", "arn:aws:s3:::bucket/MLFLOW-x", {}, "ImplicitDeny"),  # resources keep case
        ("s3:GetObject", "arn:aws:s3:::other/mlflow-x", {}, "ImplicitDeny"),
        ("s3:PutObject", "arn:aws:s3:::bucket/mlflow-locked/a", {}, "Deny"),  # Deny beats Allow
        ("sagemaker:ListEndpoints", "*", {}, "Allow"),
        (
            "iam:PassRole",
            "arn:aws:iam::123456789012:role/studio",
            {"iam:PassedToService": "sagemaker.amazonaws.com"},
            "Allow",
        ),
        (
            "iam:PassRole",
            "arn:aws:iam::123456789012:role/studio",
            {"iam:PassedToService": "ec2.amazonaws.com"},
            "ImplicitDeny",
        ),
        ("iam:PassRole", "arn:aws:iam::123456789012:role/studio", {}, "ImplicitDeny"),  # key missing
        (
            "iam:PassRole",
            "arn:aws:iam::123456789012:role/admin",
            {"iam:PassedToService": "sagemaker.amazonaws.com"},
            "ImplicitDeny",
        ),
        ("cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": "/aws/sagemaker/TrainingJobs"}, "Allow"),
        ("cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": "Custom"}, "ImplicitDeny"),
    ],
)
def test_evaluate(action, resource, context, decision):
    assert evaluate(POLICY, Request(action, resource, context)) == decision


def test_not_action_and_not_resource():
    policy = [{"Effect": "Allow", "NotAction": "iam:*", "NotResource": "arn:aws:s3:::secret/*"}]
    assert evaluate(policy, Request("s3:GetObject", "arn:aws:s3:::b/k")) == "Allow"
    assert evaluate(policy, Request("iam:GetRole", "arn:aws:iam::1:role/r")) == "ImplicitDeny"
    assert evaluate(policy, Request("s3:GetObject", "arn:aws:s3:::secret/k")) == "ImplicitDeny"


def test_unknown_condition_operator_fails_loudly():
    policy = [
        {"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"IpAddress": {"aws:SourceIp": "1.2.3.4"}}}
    ]
    with pytest.raises(NotImplementedError):
        evaluate(policy, Request("s3:GetObject", "x"))


TEMPLATES = {
    "Producer": {
        "Resources": {
            "Secret": {"Type": "AWS::SecretsManager::Secret", "Properties": {"Name": "mlflow-server-credentials"}},
            "Bucket": {"Type": "AWS::S3::Bucket", "Properties": {}},
            "Access": {
                "Type": "AWS::IAM::ManagedPolicy",
                "Properties": {
                    "PolicyDocument": {
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Action": "s3:GetObject",
                                "Resource": {"Fn::Join": ["", [{"Fn::GetAtt": ["Bucket", "Arn"]}, "/mlflow-*"]]},
                            }
                        ]
                    }
                },
            },
        },
        "Outputs": {
            "SecretArn": {"Value": {"Ref": "Secret"}},
            "AccessArn": {"Value": {"Ref": "Access"}, "Export": {"Name": "access-arn"}},
        },
    },
    "Consumer": {
        "Resources": {
            "Role": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "ManagedPolicyArns": [{"Fn::ImportValue": "access-arn"}],
                    "Policies": [
                        {
                            "PolicyDocument": {
                                "Statement": {
                                    "Effect": "Allow",
                                    "Action": "ssm:GetParameter",
                                    "Resource": {
                                        "Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:"
                                        "parameter/mlflow/*"
                                    },
                                }
                            }
                        }
                    ],
                },
            },
            "Policy": {
                "Type": "AWS::IAM::Policy",
                "Properties": {
                    "Roles": [{"Ref": "Role"}],
                    "PolicyDocument": {
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Action": "secretsmanager:GetSecretValue",
                                "Resource": {
                                    "Fn::GetStackOutput": {
                                        "StackName": "Producer",
                                        "Region": {"Ref": "AWS::Region"},
                                        "OutputName": "SecretArn",
                                    }
                                },
                            },
                            {"Effect": "Allow", "Action": "iam:PassRole", "Resource": {"Fn::GetAtt": ["Role", "Arn"]}},
                        ]
                    },
                },
            },
            "Unrelated": {
                "Type": "AWS::IAM::Policy",
                "Properties": {
                    "Roles": ["someone-else"],
                    "PolicyDocument": {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]},
                },
            },
        }
    },
}


def test_role_statements_resolve_across_stacks():
    env = Environment(
        region="eu-west-1",
        bindings={
            ("Producer", "Bucket"): {"Ref": "artifacts-1"},
            ("Producer", "Secret"): {
                "Ref": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:mlflow-server-credentials-XyZ123"
            },
            ("Consumer", "Role"): {"Ref": "studio-role"},
        },
    )
    statements = role_statements(AppResolver(TEMPLATES, env), "Consumer", "Role")
    resources = sorted(str(s["Resource"]) for s in statements)
    assert resources == [
        "arn:aws:iam::123456789012:role/studio-role",
        "arn:aws:s3:::artifacts-1/mlflow-*",
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:mlflow-server-credentials-XyZ123",
        "arn:aws:ssm:eu-west-1:123456789012:parameter/mlflow/*",
    ]
    assert evaluate(statements, Request("s3:GetObject", "arn:aws:s3:::artifacts-1/mlflow-a/b")) == "Allow"
    assert evaluate(statements, Request("s3:PutObject", "arn:aws:s3:::artifacts-1/mlflow-a/b")) == "ImplicitDeny"


def test_unknown_managed_policy_is_an_error():
    templates = {
        "S": {
            "Resources": {
                "Role": {
                    "Type": "AWS::IAM::Role",
                    "Properties": {"ManagedPolicyArns": ["arn:aws:iam::aws:policy/AdministratorAccess"]},
                }
            }
        }
    }
    with pytest.raises(Unresolvable, match="AdministratorAccess"):
        role_statements(AppResolver(templates, Environment()), "S", "Role")


def _mapper():
    from tests.lab.flow_requests import FlowMapper

    return FlowMapper(
        account="123456789012",
        region="us-east-1",
        secret_arn=lambda name: f"arn:aws:secretsmanager:us-east-1:123456789012:secret:{name}-AbCdEf",
        stack_arn=lambda name: f"arn:aws:cloudformation:us-east-1:123456789012:stack/{name}/1",
        s3_key=lambda bucket, key: key.replace("artifacts/", "mlflow-artifacts/", 1),
    )


def test_mapper_names_the_resource_each_call_is_authorized_on():
    m = _mapper()
    create = {
        "service": "sagemaker",
        "operation": "CreateEndpoint",
        "params": {"EndpointName": "mlflow-Demo", "EndpointConfigName": "mlflow-demo-config-1", "Tags": [{"Key": "a"}]},
    }
    assert [str(r) for r in m.requests_for_call(create)] == [
        "sagemaker:CreateEndpoint on arn:aws:sagemaker:us-east-1:123456789012:endpoint/mlflow-demo",
        "sagemaker:CreateEndpoint on arn:aws:sagemaker:us-east-1:123456789012:endpoint-config/mlflow-demo-config-1",
        "sagemaker:AddTags on arn:aws:sagemaker:us-east-1:123456789012:endpoint/mlflow-demo",
    ]
    model = {
        "service": "sagemaker",
        "operation": "CreateModel",
        "params": {"ModelName": "mlflow-m", "ExecutionRoleArn": "arn:aws:iam::1:role/r"},
    }
    passes = [r for r in m.requests_for_call(model) if r.action == "iam:PassRole"]
    assert passes[0].resource == "arn:aws:iam::1:role/r"
    assert passes[0].context == {"iam:PassedToService": "sagemaker.amazonaws.com"}
    head = {"service": "s3", "operation": "HeadObject", "params": {"Bucket": "b", "Key": "artifacts/1/x"}}
    assert str(m.requests_for_call(head)[0]) == "s3:GetObject on arn:aws:s3:::b/mlflow-artifacts/1/x"
    listing = {"service": "s3", "operation": "ListObjectsV2", "params": {"Bucket": "b", "Prefix": "x"}}
    assert str(m.requests_for_call(listing)[0]) == "s3:ListBucket on arn:aws:s3:::b {'s3:prefix': 'x'}"
    whole = {"service": "s3", "operation": "ListObjectsV2", "params": {"Bucket": "b"}}
    assert m.requests_for_call(whole)[0].context == {}
    param = {"service": "ssm", "operation": "GetParameter", "params": {"Name": "/mlflow/tracking-url"}}
    assert m.requests_for_call(param)[0].resource == "arn:aws:ssm:us-east-1:123456789012:parameter/mlflow/tracking-url"
    assert m.requests_for_call({"service": "sts", "operation": "GetCallerIdentity", "params": {}}) == []
    with pytest.raises(KeyError):
        m.requests_for_call({"service": "ec2", "operation": "RunInstances", "params": {}})


SET_POLICY = [
    {
        "Effect": "Allow",
        "Action": "sagemaker:CreateTrainingJob",
        "Resource": "*",
        "Condition": {
            "ForAllValues:StringEquals": {"sagemaker:InstanceTypes": ["ml.m5.large", "ml.c5.xlarge"]},
            "Null": {"sagemaker:InstanceTypes": "false"},
        },
    },
    {
        "Effect": "Allow",
        "Action": "sagemaker:CreateEndpointConfig",
        "Resource": "*",
        "Condition": {"ForAnyValue:StringLike": {"sagemaker:InstanceTypes": "ml.g5.*"}},
    },
]


@pytest.mark.parametrize(
    ("action", "types", "decision"),
    [
        ("sagemaker:CreateTrainingJob", ["ml.m5.large"], "Allow"),
        ("sagemaker:CreateTrainingJob", ["ml.m5.large", "ml.c5.xlarge"], "Allow"),
        ("sagemaker:CreateTrainingJob", ["ml.m5.large", "ml.p4d.24xlarge"], "ImplicitDeny"),  # all must match
        ("sagemaker:CreateTrainingJob", None, "ImplicitDeny"),  # Null=false: the key must be present
        ("sagemaker:CreateEndpointConfig", ["ml.m5.large", "ml.g5.xlarge"], "Allow"),  # any may match
        ("sagemaker:CreateEndpointConfig", ["ml.m5.large"], "ImplicitDeny"),
        ("sagemaker:CreateEndpointConfig", None, "ImplicitDeny"),  # ForAnyValue needs the key
    ],
)
def test_set_operators_and_null(action, types, decision):
    context = {} if types is None else {"sagemaker:InstanceTypes": types}
    assert evaluate(SET_POLICY, Request(action, "arn:x", context)) == decision


def test_for_all_values_alone_passes_a_request_without_the_key():
    """Why the Studio role pairs ForAllValues with Null: IAM's ForAllValues is true for a missing key."""
    only_for_all = {"ForAllValues:StringEquals": {"sagemaker:InstanceTypes": ["ml.m5.large"]}}
    policy = [{**SET_POLICY[0], "Condition": only_for_all}]
    assert evaluate(policy, Request("sagemaker:CreateTrainingJob", "arn:x")) == "Allow"


def test_multivalued_key_needs_a_set_operator():
    policy = [{"Effect": "Allow", "Action": "*", "Resource": "*",
               "Condition": {"StringEquals": {"sagemaker:InstanceTypes": "ml.m5.large"}}}]  # fmt: skip
    with pytest.raises(ValueError, match="multivalued"):
        evaluate(policy, Request("sagemaker:CreateTrainingJob", "arn:x", {"sagemaker:InstanceTypes": ["ml.m5.large"]}))


# The names the default profile's (cdk.json's mlflow-user) workflow uses.
DEFAULT_PROFILE_PREFIX = names.workflow_name_prefix("mlflow-user")


@pytest.fixture(scope="module")
def studio_role_policy() -> list[dict]:
    """The synthesized Studio execution role with the default configuration."""
    from tests.synth import synth_templates

    templates = synth_templates()
    studio = templates[names.STUDIO_STACK]
    # The role the (default, first) user profile's notebooks run as.
    (profile,) = [res for res in studio["Resources"].values() if res["Type"] == "AWS::SageMaker::UserProfile"]
    role_id = profile["Properties"]["UserSettings"]["ExecutionRole"]["Fn::GetAtt"][0]
    return role_statements(AppResolver(templates, Environment()), names.STUDIO_STACK, role_id)


@pytest.mark.parametrize(
    ("operation", "params", "decision"),
    [
        ("CreateTrainingJob", {"ResourceConfig": {"InstanceType": "ml.m5.large"}}, "Allow"),
        ("CreateTrainingJob", {"ResourceConfig": {"InstanceType": "ml.p4d.24xlarge"}}, "ImplicitDeny"),
        ("CreateEndpointConfig", {"ProductionVariants": [{"InstanceType": "ml.m5.large"}]}, "Allow"),
        ("CreateEndpointConfig", {"ProductionVariants": [{"InstanceType": "ml.g5.48xlarge"}]}, "ImplicitDeny"),
        # One costly variant next to a cheap one is refused too.
        (
            "CreateEndpointConfig",
            {"ProductionVariants": [{"InstanceType": "ml.m5.large"}, {"InstanceType": "ml.p5.48xlarge"}]},
            "ImplicitDeny",
        ),
        # Serverless variants name no instance type: refused, the cap could not apply.
        ("CreateEndpointConfig", {"ProductionVariants": [{"ServerlessConfig": {"MaxConcurrency": 1}}]}, "ImplicitDeny"),
    ],
)
def test_studio_role_caps_instance_types(studio_role_policy, operation, params, decision):
    from tests.lab.flow_requests import instance_types_context

    kind = "training-job" if operation == "CreateTrainingJob" else "endpoint-config"
    resource = f"arn:aws:sagemaker:us-east-1:123456789012:{kind}/{DEFAULT_PROFILE_PREFIX}demo-1"
    request = Request(f"sagemaker:{operation}", resource, instance_types_context(operation, params))
    assert evaluate(studio_role_policy, request) == decision


def test_actions_without_the_instance_types_key_keep_working(studio_role_policy):
    arn = "arn:aws:sagemaker:us-east-1:123456789012:{}/" + f"{DEFAULT_PROFILE_PREFIX}demo-1"
    for action, kind in [
        ("sagemaker:DescribeTrainingJob", "training-job"),
        ("sagemaker:StopTrainingJob", "training-job"),
        ("sagemaker:DescribeEndpointConfig", "endpoint-config"),
        ("sagemaker:DeleteEndpointConfig", "endpoint-config"),
        ("sagemaker:CreateModel", "model"),
        ("sagemaker:CreateEndpoint", "endpoint"),
        ("sagemaker:InvokeEndpoint", "endpoint"),
    ]:
        assert evaluate(studio_role_policy, Request(action, arn.format(kind))) == "Allow", action
