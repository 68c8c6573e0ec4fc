"""Small queries over synthesized templates shared by the stack tests."""

from collections.abc import Iterator
from typing import Any

Template = dict[str, Any]


def resources(template: Template, resource_type: str) -> dict[str, dict[str, Any]]:
    """Logical id -> resource, for every resource of one type."""
    return {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == resource_type
    }


def only(template: Template, resource_type: str) -> tuple[str, dict[str, Any]]:
    """The one resource of a type (fails if there are none or several)."""
    found = resources(template, resource_type)
    assert len(found) == 1, f"expected one {resource_type}, found {sorted(found)}"
    return next(iter(found.items()))


def props(template: Template, resource_type: str) -> dict[str, Any]:
    return only(template, resource_type)[1]["Properties"]


def service_task_definition(template: Template) -> dict[str, Any]:
    """The MLflow service's task definition (the scheduled gc task has its own)."""
    (found,) = (
        resource["Properties"]
        for logical_id, resource in resources(template, "AWS::ECS::TaskDefinition").items()
        if logical_id.startswith("TrackingTaskDefinition")
    )
    return found


def policy_statements(template: Template) -> Iterator[dict[str, Any]]:
    """Every statement of every identity policy (inline, attached and managed) in a template."""
    for resource in template["Resources"].values():
        properties = resource.get("Properties", {})
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            yield from properties["PolicyDocument"]["Statement"]
        if resource["Type"] == "AWS::IAM::Role":
            for inline in properties.get("Policies", []):
                yield from inline["PolicyDocument"]["Statement"]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statement_actions(statement: dict[str, Any]) -> list[str]:
    """The actions a statement names; a NotAction statement names none, and may only deny."""
    if "NotAction" in statement:
        assert statement["Effect"] == "Deny", f"an Allow with NotAction grants nearly everything: {statement}"
        return []
    return as_list(statement["Action"])


def ingress_rules(template: Template) -> list[dict[str, Any]]:
    """Inline and standalone security group ingress rules."""
    rules = [r["Properties"] for r in resources(template, "AWS::EC2::SecurityGroupIngress").values()]
    for group in resources(template, "AWS::EC2::SecurityGroup").values():
        rules += group["Properties"].get("SecurityGroupIngress", [])
    return rules


def egress_rules(template: Template) -> list[dict[str, Any]]:
    rules = [r["Properties"] for r in resources(template, "AWS::EC2::SecurityGroupEgress").values()]
    for group in resources(template, "AWS::EC2::SecurityGroup").values():
        rules += group["Properties"].get("SecurityGroupEgress", [])
    return rules


def ref_id(value: Any) -> str:
    """The logical id inside a Ref or GetAtt."""
    if "Ref" in value:
        return value["Ref"]
    return value["Fn::GetAtt"][0]


def statement_by_sid(template: Template, sid: str) -> dict[str, Any]:
    matches = [s for s in policy_statements(template) if s.get("Sid") == sid]
    assert len(matches) == 1, f"expected one statement {sid}, found {len(matches)}"
    return matches[0]


def render(value: Any) -> str:
    """Flatten an intrinsic into readable text: ${AWS::Region}, ${Logical.Attr}, ${Stack:Output}."""
    if isinstance(value, str):
        return value
    ((function, argument),) = value.items()
    if function == "Ref":
        return "${%s}" % argument
    if function == "Fn::GetAtt":
        return "${%s.%s}" % tuple(argument)
    if function == "Fn::Join":
        return argument[0].join(render(part) for part in argument[1])
    if function == "Fn::Sub" and isinstance(argument, str):
        return argument
    if function == "Fn::GetStackOutput":
        return "${%s:%s}" % (argument["StackName"], argument["OutputName"])
    raise ValueError(f"cannot render {value}")


# A configured custom domain: the variant the domain tests, cdk-nag and cfn-lint synthesize.
DOMAIN = "mlflow.example.com"
HOSTED_ZONE_ID = "Z0123456789ABCDEFGHIJ"
DOMAIN_CONTEXT = {"domain_name": DOMAIN, "hosted_zone_id": HOSTED_ZONE_ID, "hosted_zone_name": "example.com"}


# sso mode with the stack's Cognito pool (snapshots, cfn-lint and the sso stack tests share this synth).
SSO_CONTEXT = {"auth_mode": "sso", "user_profiles": "alice,bob"}
# sso mode's federation: one provider of each type the stack creates in the Cognito pool.
FEDERATION = [
    {
        "name": "Google",
        "type": "google",
        "client_id": "1234-abc.apps.googleusercontent.com",
        "client_secret_name": "team/google-oauth",
    },
    {
        "name": "CorpOIDC",
        "type": "oidc",
        "issuer_url": "https://login.example.com/tenant",
        "client_id": "mlflow-web",
        "client_secret_name": "team/corp-oidc",
        "scopes": ["openid", "email"],
    },
    {"name": "CorpSAML", "type": "saml", "metadata_url": "https://idp.example.com/saml/metadata.xml"},
]
# sso mode with an external issuer: nothing but its discovery URL and its secret's name in the config.
EXTERNAL_ISSUER_CONTEXT = {
    "auth_mode": "sso",
    "oidc_provider": "external",
    "oidc_discovery_url": "https://login.example.com/oauth2/default/.well-known/openid-configuration",
    "oidc_client_secret_name": "team/mlflow-oidc",
}


def follow_output(value: Any, templates: dict[str, Template]) -> Any:
    """A cross-stack reference (Fn::GetStackOutput) replaced by the producing stack's output value."""
    if isinstance(value, dict) and "Fn::GetStackOutput" in value:
        reference = value["Fn::GetStackOutput"]
        return templates[reference["StackName"]]["Outputs"][reference["OutputName"]]["Value"]
    return value
