"""The CORS rule builder shared by the template and the local S3."""

import pytest

from stacks.components.artifact_cors import artifact_cors_rules


def test_rule_allows_exactly_the_given_origins_to_read() -> None:
    (rule,) = artifact_cors_rules(["https://mlflow.example.com"])
    assert rule["AllowedOrigins"] == ["https://mlflow.example.com"]
    assert rule["AllowedMethods"] == ["GET", "HEAD"]
    assert "ETag" in rule["ExposeHeaders"]


@pytest.mark.parametrize("bad", [[], ["mlflow.example.com"], ["https://mlflow.example.com/"], ["*"]])
def test_origins_must_be_scheme_and_host(bad: list[str]) -> None:
    with pytest.raises(ValueError, match="scheme://host"):
        artifact_cors_rules(bad)
