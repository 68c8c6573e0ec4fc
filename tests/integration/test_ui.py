"""The MLflow UI loads through the proxy within API Gateway's 10 MB response
limit: nginx compresses the JavaScript bundles."""

from __future__ import annotations

import re

import pytest
import requests

from localrun.stack import MlflowStack

pytestmark = pytest.mark.integration

LIMIT = 10 * 1024 * 1024


def test_ui_page_and_bundles_load_compressed(mlflow_stack: MlflowStack) -> None:
    session = requests.Session()
    session.auth = (mlflow_stack.username, mlflow_stack.password)
    page = session.get(mlflow_stack.proxy_url + "/", timeout=30)
    assert page.status_code == 200
    scripts = re.findall(r'src="([^"]+\.js)"', page.text)
    assert scripts, "expected the UI page to load JavaScript"
    for script in scripts:
        url = f"{mlflow_stack.proxy_url}/{script.removeprefix('./').lstrip('/')}"
        response = session.get(url, stream=True, timeout=30)
        assert response.status_code == 200
        assert response.headers["Content-Encoding"] == "gzip"
        on_the_wire = len(response.raw.read(decode_content=False))
        assert 0 < on_the_wire < LIMIT
