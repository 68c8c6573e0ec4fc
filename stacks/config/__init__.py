"""Typed, validated project settings read from CDK context, in sections.

Every setting has a default in cdk.json's "context" and can be overridden per
command with its flat key, e.g. ``npx cdk deploy --all -c task_cpu=2048``.
Values given with ``-c`` arrive as strings; pydantic coerces them to the
field's type, and each one is checked against what the AWS service accepts: a
mistake fails ``cdk synth`` with one clear sentence instead of a deploy that
rolls back half way. A key belongs to the section whose field declares it
(``config.service.task_cpu``).
"""

from stacks.config.base import ConfigError, setting
from stacks.config.project import ProjectConfig, allowed, cdk_json_context, config_from_app

__all__ = ["ConfigError", "ProjectConfig", "allowed", "cdk_json_context", "config_from_app", "setting"]
