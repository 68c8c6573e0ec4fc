#!/usr/bin/env python3
"""CDK entry point: `npx cdk synth`, `npx cdk deploy --all`."""

import os
import sys

# jsii prints an 11-line end-of-life banner for Node 20 when aws_cdk is
# imported; the README's minimum is Node 20, so say once, here, that we know.
# Must happen before the import below starts jsii's Node process.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

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
