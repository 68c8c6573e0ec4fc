"""`make cost`: the monthly cost of the configured deployment, from its synthesized templates."""
