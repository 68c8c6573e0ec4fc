from stacks.config.base import ConfigError, setting
from stacks.config.project import ProjectConfig, allowed, cdk_json_context, config_from_app

__all__ = ["ConfigError", "ProjectConfig", "allowed", "cdk_json_context", "config_from_app", "setting"]
