"""Resolve a synthesized app's intrinsics and collect the policy statements of one role.

Resources get the physical names a test binds them to (e.g. the credentials
secret -> the ARN moto gave the secret of the same name); unbound resources get
names derived from their properties or logical IDs, in the same ARN formats
AWS uses, so patterns written with Fn::Join / GetAtt resolve as in AWS.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

Templates = dict[str, dict[str, Any]]


@dataclass
class Environment:
    """Pseudo parameters and the physical names of bound resources."""

    account: str = "123456789012"
    region: str = "us-east-1"
    partition: str = "aws"
    # (stack name, logical id) -> {"Ref": ..., "Arn": ..., other attributes}
    bindings: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)


class Unresolvable(ValueError):
    """An intrinsic the resolver does not know: the test must not guess."""


class AppResolver:
    """Resolves Ref, GetAtt, Join, Sub, Select, Split, ImportValue and GetStackOutput."""

    def __init__(self, templates: Templates, env: Environment) -> None:
        self.templates = templates
        self.env = env

    # -- resources -----------------------------------------------------------------
    def resource(self, stack: str, logical: str) -> dict[str, Any]:
        try:
            return self.templates[stack]["Resources"][logical]
        except KeyError as missing:
            raise Unresolvable(f"no resource {logical} in {stack}") from missing

    def attributes(self, stack: str, logical: str) -> dict[str, str]:
        """Ref and GetAtt values of a resource, bound by the test or derived."""
        bound = self.env.bindings.get((stack, logical), {})
        res = self.resource(stack, logical)
        props = res.get("Properties", {})
        e = self.env
        arn = f"arn:{e.partition}:{{service}}:{e.region}:{e.account}:{{resource}}"

        def prop(name: str) -> str:
            value = props.get(name)
            return self.resolve(stack, value) if value is not None else logical.lower()

        kind = res["Type"]
        derived: dict[str, str]
        if kind == "AWS::IAM::Role":
            name = bound.get("Ref") or prop("RoleName")
            derived = {"Ref": name, "Arn": f"arn:{e.partition}:iam::{e.account}:role/{name}"}
        elif kind == "AWS::IAM::ManagedPolicy":
            name = prop("ManagedPolicyName") if "ManagedPolicyName" in props else logical
            derived = {"Ref": f"arn:{e.partition}:iam::{e.account}:policy/{name}"}
        elif kind == "AWS::S3::Bucket":
            name = bound.get("Ref") or prop("BucketName")
            derived = {"Ref": name, "Arn": f"arn:{e.partition}:s3:::{name}"}
        elif kind == "AWS::SecretsManager::Secret":
            name = prop("Name")
            derived = {"Ref": arn.format(service="secretsmanager", resource=f"secret:{name}-AbCdEf")}
        elif kind == "AWS::ECR::Repository":
            name = bound.get("Ref") or prop("RepositoryName")
            derived = {"Ref": name, "Arn": arn.format(service="ecr", resource=f"repository/{name}")}
        elif kind == "AWS::CodeBuild::Project":
            name = bound.get("Ref") or prop("Name")
            derived = {"Ref": name, "Arn": arn.format(service="codebuild", resource=f"project/{name}")}
        elif kind == "AWS::SageMaker::Domain":
            domain = bound.get("DomainId", "d-testdomain01")
            derived = {"DomainId": domain, "DomainArn": arn.format(service="sagemaker", resource=f"domain/{domain}")}
        elif kind == "AWS::SSM::Parameter":
            derived = {"Ref": prop("Name")}
        else:
            derived = {"Ref": f"{stack}.{logical}"}
        return {**derived, **bound}

    # -- intrinsics ----------------------------------------------------------------
    def resolve(self, stack: str, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(stack, v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) != 1 or not next(iter(value)).startswith(("Ref", "Fn::")):
            return {k: self.resolve(stack, v) for k, v in value.items()}
        ((name, arg),) = value.items()
        if name == "Ref":
            return self._ref(stack, arg)
        if name == "Fn::GetAtt":
            logical, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
            attrs = self.attributes(stack, logical)
            if attribute not in attrs:
                raise Unresolvable(f"GetAtt {logical}.{attribute} in {stack}")
            return attrs[attribute]
        if name == "Fn::Join":
            sep, parts = arg
            return sep.join(str(p) for p in self.resolve(stack, parts))
        if name == "Fn::Sub":
            text, variables = (arg, {}) if isinstance(arg, str) else arg
            variables = {k: self.resolve(stack, v) for k, v in variables.items()}
            return re.sub(r"\$\{([^}!]+)\}", lambda m: str(self._sub_var(stack, m.group(1), variables)), text)
        if name == "Fn::Select":
            index, items = arg
            return self.resolve(stack, items)[int(self.resolve(stack, index))]
        if name == "Fn::Split":
            sep, text = arg
            return str(self.resolve(stack, text)).split(sep)
        if name == "Fn::ImportValue":
            return self._import(self.resolve(stack, arg))
        if name == "Fn::GetStackOutput":
            return self.output(self.resolve(stack, arg["StackName"]), arg["OutputName"])
        raise Unresolvable(f"{name} in {stack}")

    def output(self, stack: str, key: str) -> Any:
        try:
            return self.resolve(stack, self.templates[stack]["Outputs"][key]["Value"])
        except KeyError as missing:
            raise Unresolvable(f"no output {key} in {stack}") from missing

    def _ref(self, stack: str, name: str) -> str:
        pseudo = {
            "AWS::AccountId": self.env.account,
            "AWS::Region": self.env.region,
            "AWS::Partition": self.env.partition,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": stack,
        }
        if name in pseudo:
            return pseudo[name]
        parameters = self.templates[stack].get("Parameters", {})
        if name in parameters:
            return parameters[name].get("Default", f"{stack}.{name}")
        return self.attributes(stack, name)["Ref"]

    def _sub_var(self, stack: str, var: str, variables: dict[str, Any]) -> Any:
        if var in variables:
            return variables[var]
        if "." in var and not var.startswith("AWS::"):
            logical, attribute = var.split(".", 1)
            return self.resolve(stack, {"Fn::GetAtt": [logical, attribute]})
        return self._ref(stack, var)

    def _import(self, export: str) -> Any:
        for stack, template in self.templates.items():
            for output in template.get("Outputs", {}).values():
                exported = output.get("Export", {}).get("Name")
                if exported is not None and self.resolve(stack, exported) == export:
                    return self.resolve(stack, output["Value"])
        raise Unresolvable(f"no export named {export}")


def role_statements(resolver: AppResolver, stack: str, role_logical_id: str) -> list[dict[str, Any]]:
    """Every statement that applies to the role: inline, AWS::IAM::Policy, managed policies.

    A managed policy ARN that no template defines (an AWS managed policy) raises:
    its contents are unknown here, so the role could not be checked.
    """
    role = resolver.resource(stack, role_logical_id)
    if role["Type"] != "AWS::IAM::Role":
        raise ValueError(f"{role_logical_id} is a {role['Type']}")
    role_name = resolver.attributes(stack, role_logical_id)["Ref"]
    statements: list[dict[str, Any]] = []
    for policy in role.get("Properties", {}).get("Policies", []):
        statements += _as_statements(resolver.resolve(stack, policy["PolicyDocument"]))

    # Documents are resolved only for policies that reach this role: other
    # policies may use intrinsics this resolver has no reason to know.
    managed_by_arn: dict[str, tuple[str, dict[str, Any]]] = {}
    for other, template in resolver.templates.items():
        for logical, res in template.get("Resources", {}).items():
            if res["Type"] not in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
                continue
            props = res["Properties"]
            if res["Type"] == "AWS::IAM::ManagedPolicy":
                managed_by_arn[resolver.attributes(other, logical)["Ref"]] = (other, props["PolicyDocument"])
            if role_name in resolver.resolve(other, props.get("Roles", [])):
                statements += _as_statements(resolver.resolve(other, props["PolicyDocument"]))

    for arn in resolver.resolve(stack, role.get("Properties", {}).get("ManagedPolicyArns", [])):
        if arn not in managed_by_arn:
            raise Unresolvable(f"managed policy {arn} is not defined in the app; cannot check it")
        other, document = managed_by_arn[arn]
        statements += _as_statements(resolver.resolve(other, document))
    return statements


def _as_statements(document: dict[str, Any]) -> list[dict[str, Any]]:
    statement = document["Statement"]
    return statement if isinstance(statement, list) else [statement]
