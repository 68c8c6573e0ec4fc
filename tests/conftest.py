"""Suite-wide settings that must be in place before aws_cdk is imported."""

import os

# Node 20 is past end of life for jsii, which prints a banner on every import.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
