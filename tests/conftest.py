"""Suite-wide settings that must be in place before aws_cdk is imported."""

import os

import pytest

# Node 20 is past end of life for jsii, which prints a banner on every import.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list) -> None:
    """Under `-n`, keep each module on one worker (its module fixtures start once).

    Modules that share a session's worth of work (the executed Studio notebook)
    set one `xdist_group` themselves and run on the same worker. tryfirst:
    xdist reads the groups in its own hook, which would otherwise run first.
    """
    for item in items:
        if not item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))


def pytest_terminal_summary(terminalreporter) -> None:  # noqa: ANN001 - pytest's TerminalReporter
    """Print where tests left files for people to look at (recorded as `screenshot`)."""
    paths = sorted(
        {
            value
            for reports in terminalreporter.stats.values()
            for report in reports
            for name, value in getattr(report, "user_properties", [])
            if name == "screenshot"
        }
    )
    if paths:
        terminalreporter.write_sep("-", "screenshots")
        for path in paths:
            terminalreporter.write_line(str(path))
