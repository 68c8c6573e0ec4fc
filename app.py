#!/usr/bin/env python3
"""CDK entry point: `npx cdk synth|deploy --all`."""

import sys

import aws_cdk as cdk

from stacks.app_builder import build_stacks
from stacks.config import ConfigError, config_from_app


def main() -> int:
    app = cdk.App()
    try:
        config = config_from_app(app)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    build_stacks(app, config)
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
