"""CDK stacks and the constructs they wire together."""
