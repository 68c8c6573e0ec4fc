"""ProjectConfig: defaults, cdk.json, coercion of `-c key=value` strings, and one test per rule."""

import json
import re
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk import aws_logs as logs
from pydantic import ValidationError

from stacks.config import ConfigError, ProjectConfig, allowed, cdk_json_context, config_from_app, setting
from stacks.config import project as config_module

DEFAULTS = {name: default for name, (default, _, _) in ProjectConfig.documented().items()}
ZONE = {"hosted_zone_id": "Z0123456789ABCDEFGHIJ", "hosted_zone_name": "example.com"}

WORKDAY_UP = "cron(0 7 ? * MON-FRI *)"
NIGHTS = {"down": "cron(0 19 ? * MON-FRI *)", "up": WORKDAY_UP}


def test_defaults_are_valid() -> None:
    config = ProjectConfig()
    assert config.network.az_count == 2 and config.service.task_cpu == 1024 and config.service.task_memory_mib == 2048
    assert config.studio.sagemaker_domain_id is None and config.studio.creates_studio_domain
    assert not config.operations.destroy_on_removal and config.operations.cdk_removal_policy == cdk.RemovalPolicy.RETAIN
    assert config.database.auto_pause_enabled and config.database.aurora_auto_pause is not None
    assert config.operations.log_retention == logs.RetentionDays.ONE_MONTH


def test_cdk_json_holds_every_key_with_its_default() -> None:
    context = cdk_json_context()
    ours = {k: v for k, v in context.items() if not k.startswith("@") and ":" not in k}
    assert list(ours) == list(DEFAULTS)
    for name, default in DEFAULTS.items():
        expected = "" if default is None else default
        assert ours[name] == expected, name
        assert type(ours[name]) is type(expected) or isinstance(expected, float), name
    assert ProjectConfig.from_context(context) == ProjectConfig()


def test_cdk_json_carries_recommended_feature_flags() -> None:
    context = cdk_json_context()
    assert context["@aws-cdk/core:checkSecretUsage"] is True
    assert context["@aws-cdk/aws-ec2:restrictDefaultSecurityGroup"] is True
    assert sum(key.startswith("@aws-cdk") for key in context) > 50


def test_config_from_app_reads_the_tree_context() -> None:
    app = cdk.App(context={**cdk_json_context(), "az_count": "3", "nat_gateways": "3"})
    assert config_from_app(app).network.az_count == 3


def test_string_overrides_are_coerced() -> None:
    config = ProjectConfig.from_context(
        {
            "az_count": "3",
            "nat_gateways": " 2 ",
            "aurora_min_acu": "0.5",
            "aurora_max_acu": "8",
            "api_throttle_rate_limit": "12.5",
            "sagemaker_domain_id": "",
            "vpc_cidr": " 10.0.0.0/20 ",
            "removal_policy": "destroy",
            "task_cpu": 2048.0,
            "task_memory_mib": "4096",
        }
    )
    assert (
        config.network.az_count,
        config.network.nat_gateways,
        config.service.task_cpu,
        config.service.task_memory_mib,
    ) == (3, 2, 2048, 4096)
    assert (
        config.database.aurora_min_acu == 0.5
        and isinstance(config.database.aurora_max_acu, float)
        and config.database.aurora_max_acu == 8
    )
    assert config.service.api_throttle_rate_limit == 12.5 and config.network.vpc_cidr == "10.0.0.0/20"
    assert config.studio.sagemaker_domain_id is None and config.operations.destroy_on_removal
    assert not config.database.auto_pause_enabled and config.database.aurora_auto_pause is None
    assert config.operations.cdk_removal_policy == cdk.RemovalPolicy.DESTROY


def test_ai_gateway_takes_json_booleans_and_the_words_of_a_c_override() -> None:
    assert ProjectConfig().service.ai_gateway is False
    for value, expected in ((True, True), (False, False), ("true", True), (" False ", False), ("TRUE", True)):
        assert ProjectConfig.from_context({"ai_gateway": value}).service.ai_gateway is expected, value


def test_scaling_to_zero_is_off_by_default_and_takes_two_crons_as_an_object_or_json_text() -> None:
    assert ProjectConfig().service.schedule_scale_to_zero is None
    assert ProjectConfig.from_context(cdk_json_context()).service.schedule_scale_to_zero is None
    for value in (NIGHTS, json.dumps(NIGHTS), f" {json.dumps(NIGHTS)} "):
        schedule = ProjectConfig.from_context({"schedule_scale_to_zero": value}).service.schedule_scale_to_zero
        assert schedule is not None and (schedule.down, schedule.up) == (NIGHTS["down"], NIGHTS["up"])
    assert ProjectConfig.from_context({"schedule_scale_to_zero": ""}).service.schedule_scale_to_zero is None


def test_gc_runs_daily_by_default_and_takes_rates_crons_or_nothing() -> None:
    operations = ProjectConfig().operations
    assert (operations.gc_schedule, operations.gc_older_than_days, operations.gc_delete_orphans) == (
        "cron(0 3 * * ? *)",
        30,
        False,
    )
    for schedule in ("rate(1 day)", "rate(12 hours)", "cron(15 2 ? * MON-FRI *)"):
        assert ProjectConfig.from_context({"gc_schedule": schedule}).operations.gc_schedule == schedule
    assert ProjectConfig.from_context({"gc_schedule": ""}).operations.gc_schedule is None


def test_alarm_email_is_optional_and_trimmed() -> None:
    assert ProjectConfig().operations.alarm_email is None
    assert ProjectConfig.from_context({"alarm_email": ""}).operations.alarm_email is None
    assert (
        ProjectConfig.from_context({"alarm_email": " ops+mlflow@example.co.uk "}).operations.alarm_email
        == "ops+mlflow@example.co.uk"
    )


def test_existing_domain_id_is_kept() -> None:
    config = ProjectConfig.from_context({"sagemaker_domain_id": "d-abc123def456"})
    assert config.studio.sagemaker_domain_id == "d-abc123def456" and not config.studio.creates_studio_domain


def test_custom_domain_is_off_by_default_and_needs_its_zone() -> None:
    assert ProjectConfig().domain.custom_domain is None
    empty = {"domain_name": "", "hosted_zone_id": " ", "hosted_zone_name": ""}
    assert ProjectConfig.from_context(empty) == ProjectConfig()
    config = ProjectConfig(domain_name="mlflow.example.com", **ZONE)
    assert config.domain.custom_domain is not None
    assert (
        config.domain.custom_domain.name,
        config.domain.custom_domain.zone_id,
        config.domain.custom_domain.zone_name,
    ) == (
        "mlflow.example.com",
        "Z0123456789ABCDEFGHIJ",
        "example.com",
    )
    assert config.domain.custom_domain.url == "https://mlflow.example.com"


def test_domain_names_are_compared_in_one_form() -> None:
    """DNS is case-insensitive and a trailing dot only says "fully qualified"."""
    config = ProjectConfig(domain_name=" MLflow.Example.COM. ", hosted_zone_id="Z0123", hosted_zone_name="example.com.")
    assert (config.domain.domain_name, config.domain.hosted_zone_name) == ("mlflow.example.com", "example.com")
    # The zone apex itself, and a name exactly 64 characters long (ACM's limit), are fine.
    assert ProjectConfig(domain_name="example.com", **ZONE).domain.domain_name == "example.com"
    longest = "x" * 53 + ".example.com"
    assert len(longest) == 65 and ProjectConfig(domain_name=longest[1:], **ZONE).domain.domain_name == longest[1:]


def test_cdk_keys_are_ignored() -> None:
    config = ProjectConfig.from_context(
        {
            "@aws-cdk/x": "anything",
            "aws:cdk:enable-path-metadata": True,
            "availability-zones:account=123456789012:region=eu-west-1": ["eu-west-1a"],
        }
    )
    assert config == ProjectConfig()


def test_every_log_retention_value_maps_to_the_cdk_enum() -> None:
    for days in allowed("log_retention_days").split(", "):
        assert isinstance(ProjectConfig(log_retention_days=int(days)).operations.log_retention, logs.RetentionDays)


SSO = {"auth_mode": "sso"}
EXTERNAL = {
    "auth_mode": "sso",
    "oidc_provider": "external",
    "oidc_discovery_url": "https://login.example.com/.well-known/openid-configuration",
    "oidc_client_secret_name": "mlflow/oidc",
}
GOOGLE = {"name": "Google", "type": "google", "client_id": "1234.apps.googleusercontent.com",
          "client_secret_name": "team/google"}  # fmt: skip
OIDC = {"name": "Corp", "type": "oidc", "issuer_url": "https://login.example.com/tenant", "client_id": "mlflow",
        "client_secret_name": "team/corp"}  # fmt: skip
SAML = {"name": "CorpSAML", "type": "saml", "metadata_url": "https://idp.example.com/metadata.xml"}

INVALID = [
    # (overrides, key named in the message, hint of what is allowed)
    ({"task_mem": 4096}, "task_mem", "did you mean task_memory_mib"),
    ({"desired_task_count": -1}, "desired_task_count", "1-20"),
    ({"min_task_count": 0}, "min_task_count", "1-20"),
    ({"max_task_count": 21}, "max_task_count", "1-20"),
    ({"min_task_count": 5, "max_task_count": 4, "desired_task_count": 4}, "min_task_count", "1-4"),
    ({"desired_task_count": 5}, "desired_task_count", "2-4 (min_task_count to max_task_count)"),
    ({"desired_task_count": 1}, "desired_task_count", "2-4 (min_task_count to max_task_count)"),
    ({"nat_gateways": 3}, "nat_gateways", "1-2"),
    ({"nat_gateways": 0}, "nat_gateways", "1 to az_count"),
    ({"az_count": 1}, "az_count", "2 or 3"),
    ({"az_count": "4"}, "az_count", "2 or 3"),
    ({"task_memory_mib": 3000}, "task_memory_mib", "2048-8192 in steps of 1024"),
    ({"task_cpu": 256, "task_memory_mib": 3072}, "task_memory_mib", "512, 1024, 2048"),
    ({"task_cpu": 8192, "task_memory_mib": 17408}, "task_memory_mib", "16384-61440 in steps of 4096"),
    ({"task_cpu": 1000}, "task_cpu", "256, 512, 1024, 2048, 4096, 8192, 16384"),
    ({"vpc_cidr": "10.0.0.0/33"}, "vpc_cidr", "/16 to /20"),
    ({"vpc_cidr": "10.0.0.1/16"}, "vpc_cidr", "/16 to /20"),
    ({"vpc_cidr": "abc"}, "vpc_cidr", "/16 to /20"),
    ({"vpc_cidr": "10.0.0.0/255.255.0.0"}, "vpc_cidr", "/16 to /20"),
    ({"vpc_cidr": "fd00::/56"}, "vpc_cidr", "/16 to /20"),
    ({"vpc_cidr": "10.0.0.0/8"}, "vpc_cidr", "/16 to /20"),
    ({"vpc_cidr": "10.0.0.0/24"}, "vpc_cidr", "/16 to /20"),
    ({"cpu_scaling_target_percent": 95}, "cpu_scaling_target_percent", "10-90"),
    ({"mlflow_workers": 0}, "mlflow_workers", "1-16"),
    ({"aurora_min_acu": 0.25}, "aurora_min_acu", "steps of 0.5"),
    ({"aurora_max_acu": "2.3"}, "aurora_max_acu", "steps of 0.5"),
    ({"aurora_max_acu": 0.5}, "aurora_max_acu", "1-256"),
    ({"aurora_max_acu": 300}, "aurora_max_acu", "1-256"),
    ({"aurora_min_acu": 8, "aurora_max_acu": 4}, "aurora_min_acu", "0-4 in steps of 0.5"),
    ({"aurora_min_acu": "nan"}, "aurora_min_acu", "0-256"),
    ({"aurora_max_acu": float("inf")}, "aurora_max_acu", "1-256"),
    ({"aurora_auto_pause_minutes": 4}, "aurora_auto_pause_minutes", "5-1440"),
    ({"log_retention_days": 45}, "log_retention_days", "30, 60, 90"),
    ({"removal_policy": "delete"}, "removal_policy", "retain, destroy"),
    ({"removal_policy": "RETAIN"}, "removal_policy", "retain, destroy"),
    ({"credentials_secret_name": "mlflow-abcdef"}, "credentials_secret_name", "hyphen and 6 characters"),
    ({"credentials_secret_name": "bad name"}, "credentials_secret_name", "1-180 of"),
    ({"credentials_secret_name": "x" * 513}, "credentials_secret_name", "1-180 of"),
    ({"sagemaker_domain_id": "d-ABC123DEF456"}, "sagemaker_domain_id", "d- and 12 lowercase"),
    ({"sagemaker_domain_id": "domain-1"}, "sagemaker_domain_id", "d- and 12 lowercase"),
    ({"credentials_secret_name": "x" * 181}, "credentials_secret_name", "1-180 of"),
    ({"auth_mode": "SSO"}, "auth_mode", "shared, accounts, sso"),
    ({"auth_mode": "Accounts"}, "auth_mode", "shared, accounts, sso"),
    ({"auth_mode": ""}, "auth_mode", "shared, accounts, sso"),
    ({"oidc_provider": "okta"}, "oidc_provider", "cognito, external"),
    ({**SSO, "oidc_provider": "external"}, "oidc_discovery_url", "an https URL ending in /.well-known/"),
    ({**EXTERNAL, "oidc_client_secret_name": ""}, "oidc_client_secret_name", "not ending in a hyphen"),
    ({**EXTERNAL, "oidc_client_secret_name": "mlflow/oidc-client"}, "oidc_client_secret_name", "not ending in"),
    (
        {**EXTERNAL, "oidc_discovery_url": "http://login.example.com/.well-known/openid-configuration"},
        "oidc_discovery_url",
        "an https URL",
    ),
    ({**EXTERNAL, "oidc_discovery_url": "https://login.example.com/"}, "oidc_discovery_url", "an https URL"),
    ({**EXTERNAL, "oidc_discovery_url": "https:///.well-known/openid-configuration"}, "oidc_discovery_url", "https"),
    ({**EXTERNAL, "cognito_domain_prefix": "team-mlflow"}, "cognito_domain_prefix", "empty with oidc_provider"),
    ({**EXTERNAL, "cognito_identity_providers": "Google"}, "cognito_identity_providers", "COGNITO (the default)"),
    ({**SSO, "oidc_discovery_url": EXTERNAL["oidc_discovery_url"]}, "oidc_discovery_url", "set oidc_provider=external"),
    ({**SSO, "oidc_client_secret_name": "mlflow/oidc"}, "oidc_client_secret_name", "set oidc_provider=external"),
    ({**SSO, "oidc_admin_group": "MLflow Admins"}, "oidc_admin_group", "without spaces with oidc_provider=cognito"),
    ({**SSO, "oidc_allowed_group": "data science"}, "oidc_allowed_group", "without spaces"),
    ({**SSO, "oidc_allowed_group": "mlflow-admins"}, "oidc_allowed_group", "other than oidc_admin_group"),
    ({"oidc_admin_group": "a,b"}, "oidc_admin_group", "1-128 characters without commas"),
    ({"oidc_admin_group": ""}, "oidc_admin_group", "1-128 characters"),
    ({"oidc_admin_group": "x" * 129}, "oidc_admin_group", "1-128 characters"),
    ({"cognito_identity_providers": ""}, "cognito_identity_providers", "1-10 distinct names"),
    ({"cognito_identity_providers": "COGNITO,Google,Google"}, "cognito_identity_providers", "1-10 distinct"),
    ({"cognito_identity_providers": "My SAML"}, "cognito_identity_providers", "1-32 letters"),
    ({"cognito_identity_providers": ["COGNITO", 3]}, "cognito_identity_providers", "1-10 distinct names"),
    ({"cognito_identity_providers": ",".join(f"P{i}" for i in range(11))}, "cognito_identity_providers", "1-10"),
    ({**SSO, "cognito_federation": "[{"}, "cognito_federation", "a JSON list of 0-10 providers"),
    ({**SSO, "cognito_federation": '{"name": "Google"}'}, "cognito_federation", "a JSON list"),
    ({**SSO, "cognito_federation": ["Google"]}, "cognito_federation", "each {name, type}"),
    ({**SSO, "cognito_federation": [{**GOOGLE, "name": "google"}]}, "cognito_federation", "(name Google)"),
    ({**SSO, "cognito_federation": [{**SAML, "type": "ldap"}]}, "cognito_federation", "google, oidc, saml"),
    ({**SSO, "cognito_federation": [{**GOOGLE, "client_secret_name": ""}]}, "cognito_federation", "client_secret"),
    (
        {**SSO, "cognito_federation": [{**GOOGLE, "client_secret_name": "team/google-abcdef"}]},
        "cognito_federation",
        "client_secret_name",
    ),
    ({**SSO, "cognito_federation": [{**GOOGLE, "client_secret": "s3cret"}]}, "cognito_federation", "google:"),
    ({**SSO, "cognito_federation": [{**GOOGLE, "client_id": "a b"}]}, "cognito_federation", "client_id"),
    (
        {**SSO, "cognito_federation": [{**OIDC, "issuer_url": "http://login.example.com"}]},
        "cognito_federation",
        "issuer_url (https)",
    ),
    ({**SSO, "cognito_federation": [{**OIDC, "scopes": ["email"]}]}, "cognito_federation", "scopes with openid"),
    ({**SSO, "cognito_federation": [{**OIDC, "name": "COGNITO"}]}, "cognito_federation", "1-32 letters"),
    ({**SSO, "cognito_federation": [{**OIDC, "name": "Corp IdP"}]}, "cognito_federation", "1-32 letters"),
    (
        {**SSO, "cognito_federation": [{**SAML, "metadata_url": "file:///etc/passwd"}]},
        "cognito_federation",
        "metadata_url (https)",
    ),
    (
        {**SSO, "cognito_federation": [{k: v for k, v in OIDC.items() if k != "issuer_url"}]},
        "cognito_federation",
        "issuer_url",
    ),
    ({**SSO, "cognito_federation": [SAML, SAML]}, "cognito_federation", "0-10 providers"),
    ({**SSO, "cognito_federation": [{**SAML, "name": f"S{i}"} for i in range(11)]}, "cognito_federation", "0-10"),
    (
        {**SSO, "cognito_federation": [GOOGLE], "cognito_identity_providers": "COGNITO,Google"},
        "cognito_federation",
        "names not in cognito_identity_providers",
    ),
    ({"cognito_federation": [GOOGLE]}, "cognito_federation", "set auth_mode=sso with oidc_provider=cognito"),
    ({**EXTERNAL, "cognito_federation": [SAML]}, "cognito_federation", "oidc_provider=cognito"),
    ({"oidc_machine_clients": "ci bot"}, "oidc_machine_clients", "OAuth client ids of 1-128"),
    ({"oidc_machine_clients": "a,b,a"}, "oidc_machine_clients", "0-50 distinct"),
    ({"oidc_machine_clients": ["a", 1]}, "oidc_machine_clients", "0-50 distinct"),
    ({"oidc_machine_clients": ",".join(f"c{i}" for i in range(51))}, "oidc_machine_clients", "0-50"),
    ({"cognito_domain_prefix": "MLflow"}, "cognito_domain_prefix", "lowercase letters"),
    ({"cognito_domain_prefix": "mlflow-"}, "cognito_domain_prefix", "inner hyphens"),
    ({"cognito_domain_prefix": "team-aws-mlflow"}, "cognito_domain_prefix", "without aws, amazon or cognito"),
    ({"cognito_domain_prefix": "mycognito"}, "cognito_domain_prefix", "without aws, amazon or cognito"),
    ({"default_permission": "read"}, "default_permission", "READ, EDIT, MANAGE, NO_PERMISSIONS"),
    ({"default_permission": "ALL"}, "default_permission", "READ, EDIT, MANAGE, NO_PERMISSIONS"),
    ({"user_profiles": "-user"}, "user_profiles", "1-63 letters"),
    ({"user_profiles": ["a" * 64]}, "user_profiles", "1-63 letters"),
    ({"user_profiles": "alice,my_user"}, "user_profiles", "1-63 letters"),
    ({"user_profiles": ""}, "user_profiles", "1-20 distinct names"),
    ({"user_profiles": []}, "user_profiles", "1-20 distinct names"),
    ({"user_profiles": "alice,bob,alice"}, "user_profiles", "1-20 distinct names"),
    ({"user_profiles": "alice,Alice"}, "user_profiles", "1-20 distinct names"),
    ({"user_profiles": ",".join(f"user{i}" for i in range(21))}, "user_profiles", "1-20 distinct names"),
    ({"user_profiles": ["alice", 7]}, "user_profiles", "1-20 distinct names"),
    ({"user_profiles": "alice,mlflow", "auth_mode": "accounts"}, "user_profiles", "other than mlflow"),
    ({"user_profile_name": "alice"}, "user_profile_name", "e.g. -c user_profiles=alice,bob"),
    ({"api_throttle_rate_limit": 0}, "api_throttle_rate_limit", "more than 0"),
    ({"api_throttle_rate_limit": "20000"}, "api_throttle_rate_limit", "at most 10000"),
    ({"api_throttle_burst_limit": 0}, "api_throttle_burst_limit", "1-5000"),
    ({"az_count": True}, "az_count", "2 or 3"),
    ({"mlflow_workers": "2.5"}, "mlflow_workers", "1-16"),
    ({"mlflow_workers": 2.5}, "mlflow_workers", "1-16"),
    ({"mlflow_workers": "two"}, "mlflow_workers", "1-16"),
    ({"mlflow_workers": None}, "mlflow_workers", "1-16"),
    ({"aurora_max_acu": False}, "aurora_max_acu", "1-256"),
    ({"user_profiles": 7}, "user_profiles", "1-63 letters"),
    ({"domain_name": "mlflow.example.com"}, "domain_name", "all three of domain_name, hosted_zone_id"),
    ({**ZONE}, "hosted_zone_id", "all three of domain_name, hosted_zone_id, hosted_zone_name, or none"),
    ({"domain_name": "mlflow.example.com", "hosted_zone_name": "example.com"}, "domain_name", "or none"),
    ({**ZONE, "domain_name": "mlflow.example.org"}, "domain_name", "example.com or a name ending in .example.com"),
    ({**ZONE, "domain_name": "notexample.com"}, "domain_name", "example.com or a name ending in .example.com"),
    ({**ZONE, "domain_name": "ml_flow.example.com"}, "domain_name", "a DNS name of at most 64 characters"),
    ({**ZONE, "domain_name": "-mlflow.example.com"}, "domain_name", "a DNS name of at most 64 characters"),
    ({**ZONE, "domain_name": "*.example.com"}, "domain_name", "a DNS name of at most 64 characters"),
    ({**ZONE, "domain_name": "mlflow..example.com"}, "domain_name", "a DNS name of at most 64 characters"),
    ({**ZONE, "domain_name": "https://mlflow.example.com"}, "domain_name", "a DNS name of at most 64 characters"),
    ({**ZONE, "domain_name": "x" * 53 + ".example.com"}, "domain_name", "at most 64 characters"),
    ({**ZONE, "domain_name": 7}, "domain_name", "a DNS name"),
    ({**ZONE, "domain_name": "localhost", "hosted_zone_name": "localhost"}, "domain_name", "a DNS name"),
    ({**ZONE, "domain_name": "mlflow.example.com", "hosted_zone_id": "z0123"}, "hosted_zone_id", "Z and 1-31"),
    ({**ZONE, "domain_name": "mlflow.example.com", "hosted_zone_id": "/hostedzone/Z0123"}, "hosted_zone_id", "Z and"),
    ({**ZONE, "domain_name": "mlflow.example.com", "hosted_zone_id": "Z" + "1" * 32}, "hosted_zone_id", "Z and"),
    ({**ZONE, "domain_name": "mlflow.example.com", "hosted_zone_name": "10.0.0.1"}, "hosted_zone_name", "a DNS name"),
    ({"backup_retention_days": 0}, "backup_retention_days", "1-35"),
    ({"backup_retention_days": "36"}, "backup_retention_days", "1-35"),
    ({"backup_retention_days": "a week"}, "backup_retention_days", "1-35"),
    ({"artifact_version_retention_days": 0}, "artifact_version_retention_days", "1-3650"),
    ({"artifact_version_retention_days": 3651}, "artifact_version_retention_days", "1-3650"),
    ({"alarm_email": "ops"}, "alarm_email", "one email address"),
    ({"alarm_email": "ops@localhost"}, "alarm_email", "one email address"),
    ({"alarm_email": "a@b.com,c@d.com"}, "alarm_email", "one email address"),
    ({"alarm_email": "o ps@example.com"}, "alarm_email", "one email address"),
    ({"alarm_email": "x" * 250 + "@example.com"}, "alarm_email", "one email address"),
    ({"alarm_email": 5}, "alarm_email", "one email address"),
    ({"gc_schedule": "daily"}, "gc_schedule", "rate(N hours|days)"),
    ({"gc_schedule": "rate(1 days)"}, "gc_schedule", "rate(N hours|days)"),
    ({"gc_schedule": "rate(5 minutes)"}, "gc_schedule", "rate(N hours|days)"),
    ({"gc_schedule": "cron(0 3 * * ?)"}, "gc_schedule", "cron(six fields)"),
    ({"gc_schedule": "at(2030-01-01T00:00:00)"}, "gc_schedule", "cron(six fields)"),
    ({"gc_older_than_days": 0}, "gc_older_than_days", "1-3650"),
    ({"gc_older_than_days": 3651}, "gc_older_than_days", "1-3650"),
    ({"gc_delete_orphans": "sometimes"}, "gc_delete_orphans", "true or false"),
    ({"ai_gateway": "yes"}, "ai_gateway", "true or false"),
    ({"ai_gateway": 1}, "ai_gateway", "true or false"),
    ({"ai_gateway": ""}, "ai_gateway", "true or false"),
    ({"schedule_scale_to_zero": "{oops"}, "schedule_scale_to_zero", "cron(six fields)"),
    ({"schedule_scale_to_zero": {"down": "cron(0 19 ? * MON-FRI *)"}}, "schedule_scale_to_zero", "cron(six fields)"),
    ({"schedule_scale_to_zero": {"down": "cron(0 19 * * ?)", "up": WORKDAY_UP}}, "schedule_scale_to_zero", "in UTC"),
    ({"schedule_scale_to_zero": {"down": "rate(1 day)", "up": WORKDAY_UP}}, "schedule_scale_to_zero", "in UTC"),
    ({"schedule_scale_to_zero": {"down": WORKDAY_UP, "up": WORKDAY_UP}}, "schedule_scale_to_zero", "in UTC"),
    ({"schedule_scale_to_zero": {**NIGHTS, "back": "soon"}}, "schedule_scale_to_zero", "cron(six fields)"),
    ({"schedule_scale_to_zero": "cron(0 19 ? * MON-FRI *)"}, "schedule_scale_to_zero", "cron(six fields)"),
    ({"schedule_scale_to_zero": 7}, "schedule_scale_to_zero", "cron(six fields)"),
]


@pytest.mark.parametrize(("overrides", "key", "allowed"), INVALID, ids=[f"{c[1]}-{i}" for i, c in enumerate(INVALID)])
def test_invalid_values_are_rejected(overrides: dict, key: str, allowed: str) -> None:
    with pytest.raises(ConfigError) as caught:
        ProjectConfig.from_context({**cdk_json_context(), **overrides})
    message = str(caught.value)
    assert message.startswith("Invalid configuration: ") and "\n" not in message
    assert re.search(rf"\b{key}\b", message) and "allowed" in message and allowed in message, message


def test_renamed_key_says_what_it_became() -> None:
    for build in (
        lambda: ProjectConfig.from_context({**cdk_json_context(), "user_profile_name": "alice"}),
        lambda: ProjectConfig(user_profile_name="alice"),
    ):
        with pytest.raises(ConfigError) as caught:
            build()
        assert str(caught.value) == (
            "Invalid configuration: user_profile_name='alice' was renamed to user_profiles; "
            "allowed: a list of Studio user profile names, e.g. -c user_profiles=alice,bob."
        )


def test_federation_from_a_json_string_or_a_list_with_or_without_the_pools_own_users() -> None:
    config = ProjectConfig.from_context({**SSO, "cognito_federation": json.dumps([GOOGLE, OIDC, SAML])})
    assert [(p.name, p.type) for p in config.sso.cognito_federation] == [
        ("Google", "google"), ("Corp", "oidc"), ("CorpSAML", "saml"),
    ]  # fmt: skip
    google, corp, saml = config.sso.cognito_federation
    assert (google.client_id, google.client_secret_name) == ("1234.apps.googleusercontent.com", "team/google")
    assert corp.issuer_url == "https://login.example.com/tenant" and corp.scopes == ("openid", "email", "profile")
    assert saml.metadata_url == "https://idp.example.com/metadata.xml" and saml.client_id is None
    # Only federated sign-in: the pool's own users are not offered.
    only_corp = ProjectConfig.from_context(
        {**SSO, "cognito_identity_providers": "", "cognito_federation": [{**OIDC, "scopes": "openid email"}]}
    )
    assert only_corp.sso.cognito_identity_providers == [] and only_corp.sso.cognito_federation[0].scopes == (
        "openid",
        "email",
    )
    assert ProjectConfig.from_context({"cognito_federation": ""}).sso.cognito_federation == []


def test_sso_settings_with_cognito_and_with_an_external_issuer() -> None:
    cognito = ProjectConfig.from_context(
        {**SSO, "cognito_identity_providers": "COGNITO, Google,CorpSAML", "oidc_allowed_group": "mlflow-users"}
    )
    assert cognito.auth.needs.sign_in_provider and cognito.cognito_enabled and cognito.auth.needs.session_key
    assert cognito.sso.cognito_identity_providers == ["COGNITO", "Google", "CorpSAML"]
    assert (cognito.sso.oidc_admin_group, cognito.sso.oidc_allowed_group) == ("mlflow-admins", "mlflow-users")
    assert cognito.sso.cognito_domain_prefix is None and cognito.sso.oidc_discovery_url is None
    assert cognito.auth.oauth_client_secret_name("bob") == "mlflow-server-credentials/users/bob/oauth"

    external = ProjectConfig.from_context(
        {**EXTERNAL, "oidc_admin_group": "MLflow Admins", "oidc_machine_clients": "0oa1ci, 0oa2studio"}
    )
    assert external.sso.oidc_machine_clients == ["0oa1ci", "0oa2studio"]
    assert external.auth.needs.sign_in_provider and not external.cognito_enabled
    assert external.sso.oidc_client_secret_name == "mlflow/oidc"
    assert external.sso.oidc_admin_group == "MLflow Admins"  # spaces are fine at other providers

    # The sso keys wait unused in other modes; cdk.json can keep them while the mode changes.
    assert not ProjectConfig.from_context({**EXTERNAL, "auth_mode": "accounts"}).auth.needs.sign_in_provider
    assert not ProjectConfig().auth.needs.session_key and ProjectConfig(auth_mode="accounts").auth.needs.session_key


def test_profile_oauth_secret_name_fits_the_role_tag_like_the_login_name() -> None:
    config = ProjectConfig(credentials_secret_name="x" * 180, user_profiles=["p" * 63])
    assert len(config.auth.oauth_client_secret_name("p" * 63)) <= len(config.auth.user_secret_name("p" * 63)) <= 256


def test_accounts_settings_and_profiles() -> None:
    config = ProjectConfig.from_context(
        {"auth_mode": "accounts", "default_permission": "NO_PERMISSIONS", "user_profiles": " alice , bob-2 "}
    )
    assert config.auth.needs.admin_login and config.auth.default_permission == "NO_PERMISSIONS"
    assert config.studio.user_profiles == ["alice", "bob-2"]
    assert config.auth.user_secret_name("bob-2") == "mlflow-server-credentials/users/bob-2/login"
    assert len(ProjectConfig(user_profiles=[f"u{i}" for i in range(20)]).studio.user_profiles) == 20
    # The admin's name is free for a profile while nginx's shared login is in use.
    assert ProjectConfig(user_profiles="mlflow").studio.user_profiles == ["mlflow"]
    defaults = ProjectConfig()
    assert (defaults.auth.auth_mode, defaults.auth.default_permission) == ("shared", "READ")
    assert defaults.studio.user_profiles == ["mlflow-user"]
    assert not defaults.auth.needs.admin_login


def test_unknown_key_lists_the_known_keys() -> None:
    with pytest.raises(ConfigError, match=r"unknown context key 'zzz'; allowed keys: vpc_cidr, az_count"):
        ProjectConfig.from_context({"zzz": 1})


def test_error_shows_the_value_given() -> None:
    with pytest.raises(ConfigError) as caught:
        ProjectConfig(task_memory_mib=3000)
    assert str(caught.value) == (
        "Invalid configuration: task_memory_mib=3000 is not accepted by Fargate with task_cpu=1024; "
        "allowed: 2048-8192 in steps of 1024."
    )


def test_config_is_frozen() -> None:
    with pytest.raises(ValidationError, match="frozen"):
        ProjectConfig().network.az_count = 3  # type: ignore[misc]


class _WithList(ProjectConfig):
    """A list setting, as `-c key=a,b` and as a JSON list in cdk.json."""

    names: list[str] = setting(["a"], "a comma-separated list", "exercises list coercion")


def test_list_settings_split_comma_strings_and_keep_json_lists() -> None:
    assert _WithList(names=" x, y,,z ").names == ["x", "y", "z"]
    assert _WithList(names=["p", "q"]).names == ["p", "q"]
    assert _WithList().names == ["a"]
    with pytest.raises(ConfigError, match=r"^Invalid configuration: names=5 is not a list; allowed: a comma-separated"):
        _WithList(names=5)


# --- a rule between two settings names the one the user changed ---------------

CHANGED_KEY_NAMED = [
    # (cdk.json edits, -c overrides, key the message must name, hint of what is allowed)
    ({}, {"max_task_count": "1"}, "max_task_count", "allowed: 2-20."),
    ({}, {"min_task_count": "5"}, "min_task_count", "allowed: 1-4."),
    ({}, {"min_task_count": "3"}, "min_task_count", "1-2 (at most desired_task_count)"),
    ({}, {"desired_task_count": "1"}, "desired_task_count", "2-4 (min_task_count to max_task_count)"),
    ({}, {"min_task_count": "1", "max_task_count": "1"}, "max_task_count", "2-20 (at least desired_task_count)"),
    ({"desired_task_count": 1, "min_task_count": 1}, {"max_task_count": "0"}, "max_task_count", "1-20"),
    ({}, {"nat_gateways": "3"}, "nat_gateways", "1-2, at most one per AZ"),
    ({"az_count": 3, "nat_gateways": 3}, {"az_count": "2"}, "az_count", "3-3 (one AZ per NAT gateway)"),
    ({}, {"task_memory_mib": "3000"}, "task_memory_mib", "2048-8192 in steps of 1024"),
    ({}, {"task_cpu": "2048"}, "task_cpu", "256, 512, 1024 with task_memory_mib=2048"),
    ({}, {"aurora_min_acu": "8"}, "aurora_min_acu", "0-4 in steps of 0.5"),
    ({"aurora_min_acu": 2}, {"aurora_max_acu": "1"}, "aurora_max_acu", "2-256 in steps of 0.5"),
    ({}, {"mlflow_workers": "16"}, "mlflow_workers", "1-4 with task_memory_mib=2048; 16 with task_memory_mib=7168"),
    (
        {"mlflow_workers": 3},
        {"task_cpu": "512", "task_memory_mib": "1024"},
        "task_memory_mib",
        "task_memory_mib=2048 or more",
    ),
    ({"mlflow_workers": 4}, {"task_cpu": "512", "task_memory_mib": "1024"}, "task_memory_mib", "fewer mlflow_workers"),
    # cdk.json itself edited, nothing on the command line: the key that differs from the default.
    ({"max_task_count": 1}, {}, "max_task_count", "allowed: 2-20."),
    ({"mlflow_workers": 8}, {}, "mlflow_workers", "1-4 with task_memory_mib=2048"),
    (
        {"task_memory_mib": 1024, "task_cpu": 512, "mlflow_workers": 1},
        {"mlflow_workers": "3"},
        "mlflow_workers",
        "1-2 ",
    ),
]


@pytest.mark.parametrize(
    ("edits", "overrides", "key", "hint"),
    CHANGED_KEY_NAMED,
    ids=[f"{case[2]}-{i}" for i, case in enumerate(CHANGED_KEY_NAMED)],
)
def test_cross_setting_errors_name_the_setting_that_was_changed(
    edits: dict, overrides: dict, key: str, hint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`-c max_task_count=1` is reported as max_task_count, not as its neighbour min_task_count."""
    edited = json.loads(config_module.CDK_JSON.read_text(encoding="utf-8"))
    edited["context"].update(edits)
    (tmp_path / "cdk.json").write_text(json.dumps(edited), encoding="utf-8")
    monkeypatch.setattr(config_module, "CDK_JSON", tmp_path / "cdk.json")
    with pytest.raises(ConfigError) as caught:
        ProjectConfig.from_context({**edited["context"], **overrides})
    message = str(caught.value)
    assert message.startswith(f"Invalid configuration: {key}="), message
    assert hint in message and "\n" not in message, message


def test_direct_construction_names_the_argument_given() -> None:
    with pytest.raises(ConfigError, match=r"^Invalid configuration: max_task_count=1 is less than min_task_count=2"):
        ProjectConfig(max_task_count=1)
    with pytest.raises(ConfigError, match=r"^Invalid configuration: min_task_count=6 is more than max_task_count=4"):
        ProjectConfig(min_task_count=6, desired_task_count=4)


def test_allowed_instance_types_default_is_cheap_and_covers_the_notebook() -> None:
    allowed_types = ProjectConfig().studio.allowed_instance_types
    assert "ml.m5.large" in allowed_types  # the notebook trains and deploys on it
    assert all(t.startswith(("ml.m5.", "ml.c5.", "ml.t")) and "24x" not in t for t in allowed_types)


def test_allowed_instance_types_are_sagemaker_names() -> None:
    config = ProjectConfig.from_context({"allowed_instance_types": "ml.g5.xlarge, ml.t2.medium"})
    assert config.studio.allowed_instance_types == ["ml.g5.xlarge", "ml.t2.medium"]
    assert ProjectConfig(allowed_instance_types=["ml.p4d.24xlarge"]).studio.allowed_instance_types == [
        "ml.p4d.24xlarge"
    ]
    with pytest.raises(
        ConfigError,
        match=r"^Invalid configuration: allowed_instance_types='ml.m5.larg' has "
        r"'ml.m5.larg', which is not a SageMaker .* \(did you mean ml.m5.large\?\); allowed: one or",
    ):
        ProjectConfig.from_context({"allowed_instance_types": "ml.m5.larg"})
    with pytest.raises(ConfigError, match="which is not a SageMaker"):
        ProjectConfig(allowed_instance_types=["m5.large"])  # the EC2 name, not SageMaker's
    with pytest.raises(ConfigError, match="is empty"):
        ProjectConfig.from_context({"allowed_instance_types": ""})
    with pytest.raises(ConfigError, match="lists an instance type twice"):
        ProjectConfig(allowed_instance_types=["ml.m5.large", "ml.m5.large"])


def test_model_deployments_given_on_the_command_line_are_json_text() -> None:
    """`-c model_deployments='[...]'` passes a string; cdk.json passes the list."""
    text = '[{"model_name": "churn", "instance_type": "ml.m5.large", "instance_count": 2}]'
    (deployment,) = ProjectConfig.from_context({"model_deployments": text}).studio.model_deployments
    assert (deployment.model_name, deployment.alias, deployment.instance_count) == ("churn", "champion", 2)
    assert ProjectConfig.from_context({"model_deployments": ""}).studio.model_deployments == []
    with pytest.raises(ConfigError, match=r"^Invalid configuration: model_deployments=.*is not JSON"):
        ProjectConfig.from_context({"model_deployments": "[{oops"})


def test_model_deployments_default_to_the_champion_alias_on_an_allowed_instance_type() -> None:
    churn = {"model_name": "churn", "instance_type": "ml.m5.large"}
    (deployment,) = ProjectConfig.from_context({"model_deployments": [churn]}).studio.model_deployments
    assert (deployment.alias, deployment.instance_count) == ("champion", 1)
    with pytest.raises(ConfigError, match=r"^Invalid configuration: model_deployments=.*not in allowed_instance_types"):
        ProjectConfig.from_context({"model_deployments": [{"model_name": "churn", "instance_type": "ml.p4d.24xlarge"}]})
    with pytest.raises(ConfigError, match="model_deployments"):
        ProjectConfig.from_context(
            {"model_deployments": [{"model_name": "churn", "instance_type": "ml.m5.large", "instance_count": 0}]}
        )
