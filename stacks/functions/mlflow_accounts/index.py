"""PLACEHOLDER so the app synthesizes on this branch: the real handler comes from the
accounts-server work package (same path, handler `on_event`) and replaces this file."""


def on_event(event, context):  # noqa: ANN001, ARG001 - placeholder
    raise NotImplementedError("placeholder: the MLflow account handler has not been merged yet")
