"""Suite-wide settings that must be in place before aws_cdk is imported."""

import functools
import os

import botocore.loaders
import botocore.session
import pytest

# Node 20 is past end of life for jsii, which prints a banner on every import.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
# moto's EC2 otherwise makes its tens of thousands of default AMIs, each with a volume and a
# snapshot, whenever an in-process mock touches EC2 (a second of CPU and more each time); no
# test launches an instance or looks up an image.
os.environ.setdefault("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")


@functools.cache
def _shared_loader(search_path: str | None) -> botocore.loaders.Loader:
    """One botocore data loader per worker, for every session the tests and the code under test make.

    Each new boto3 session otherwise parses its services' JSON models again
    (tens of CPU-seconds a run: moto fixtures make a session per test).
    Nothing changes the loaded models, so sharing them is what one long-lived
    session does anyway.
    """
    return botocore.loaders.create_loader(search_path)


botocore.session.create_loader = _shared_loader


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


def pytest_terminal_summary(terminalreporter) -> None:
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
