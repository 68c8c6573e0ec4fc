"""Lambda handlers of the project's own custom resources (deployed as inline code)."""
