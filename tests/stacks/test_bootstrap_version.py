"""The preflight's bootstrap minimum is the one the synthesized templates enforce."""

from tests.stacks.helpers import Template
from tools.preflight import MIN_BOOTSTRAP_VERSION


def test_preflight_requires_the_bootstrap_version_the_templates_check(templates: dict[str, Template]) -> None:
    for template in templates.values():
        rule = template["Rules"]["CheckBootstrapVersion"]["Assertions"][0]["Assert"]
        refused = rule["Fn::Not"][0]["Fn::Contains"][0]
        assert refused == [str(v) for v in range(1, MIN_BOOTSTRAP_VERSION)]
