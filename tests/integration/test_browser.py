"""A real browser as user B in accounts mode: sees only what B may see, opens a 50 MB artifact and a trace.

Debian's Chromium, driven by Playwright (never a downloaded browser), signs
in through the proxy with HTTP basic auth. In the run's artifact view the UI
asks MLflow for a presigned URL and fetches the file from the bucket, so the
bytes never pass through nginx (or API Gateway, when deployed). The bucket's
CORS rule (stacks/components/artifact_cors.py) is what lets a page from the
proxy's origin read a presigned URL at all; that is checked in the browser
too. A trace A's client logged through the proxy shows in the experiment's
Traces tab and opens on its span. Screenshots are kept under .test-output/
(their paths are printed at the end of the run).
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from localrun.services import REPO_ROOT
from localrun.stack import MlflowStack
from stacks.components.artifact_cors import artifact_cors_rules
from tests.integration.mlflow_users import ACCOUNTS_GROUP, Account, Accounts, as_mlflow_user
from tests.integration.proxy_log import ProxyLog
from tests.integration.test_tracing import account_caller, tracing_as

pytestmark = [pytest.mark.integration, ACCOUNTS_GROUP]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
]  # fmt: skip
SCREENSHOTS = REPO_ROOT / ".test-output" / "browser"
ARTIFACT_BYTES = 50 * 1024 * 1024
TIMEOUT_MS = 120_000


@dataclass
class Scene:
    b: Account
    visible: str
    hidden: str
    experiment_id: str
    run_id: str
    sha256: str
    trace_name: str
    trace_question: str


@pytest.fixture(scope="module")
def scene(accounts: Accounts, accounts_stack: MlflowStack, tmp_path_factory: pytest.TempPathFactory) -> Scene:
    """A's two experiments, one shared with B (READ) holding a 50 MB artifact, one private."""
    a, b = accounts.new_user("a-browser"), accounts.new_user("b-browser")
    tag = secrets.token_hex(3)
    visible, hidden = f"shared-with-b-{tag}", f"private-to-a-{tag}"
    big = tmp_path_factory.mktemp("browser") / "big.bin"
    big.write_bytes(os.urandom(ARTIFACT_BYTES))
    with as_mlflow_user(accounts_stack, a):
        client = MlflowClient()
        experiment_id = client.create_experiment(visible)
        client.create_experiment(hidden)
        with mlflow.start_run(experiment_id=experiment_id) as run:
            mlflow.log_artifact(str(big))
    trace_name, trace_question = f"answer-{tag}", f"what did A trace? {tag}"
    with tracing_as(account_caller(accounts_stack, a), experiment_id):
        with mlflow.start_span(name=trace_name) as span:
            span.set_inputs({"question": trace_question})
            span.set_outputs({"answer": "a span through the proxy"})
    with accounts.client(a) as owner:
        owner.grant_user_permission(b.username, "experiment", experiment_id, "READ")
    return Scene(
        b, visible, hidden, experiment_id, run.info.run_id, hashlib.sha256(big.read_bytes()).hexdigest(),
        trace_name=trace_name, trace_question=trace_question,
    )  # fmt: skip


@pytest.fixture(scope="module")
def browser_page(scene: Scene) -> Iterator:
    if not Path(CHROMIUM).exists():
        pytest.fail("Chromium not found: apt-get install chromium (make test installs tools/system-packages.txt)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(
                http_credentials={"username": scene.b.username, "password": scene.b.password},
                accept_downloads=True, viewport={"width": 1400, "height": 900},
            )  # fmt: skip
            context.set_default_timeout(TIMEOUT_MS)
            yield context.new_page()
        finally:
            browser.close()


def test_b_sees_only_the_experiments_b_may_see(browser_page, scene: Scene, accounts_stack: MlflowStack) -> None:
    page = browser_page
    page.goto(accounts_stack.proxy_url + "/#/experiments", wait_until="commit")
    page.get_by_text(scene.visible).first.wait_for()
    page.get_by_text(scene.b.username).first.wait_for()  # signed in as B
    assert page.get_by_text(scene.hidden).count() == 0
    assert page.get_by_role("link", name="Default").count() == 0


def test_b_can_log_out_and_change_the_password(
    browser_page, scene: Scene, accounts_stack: MlflowStack, record_property
) -> None:
    page = browser_page
    page.goto(accounts_stack.proxy_url + "/#/account", wait_until="commit")
    page.get_by_text(scene.b.username).first.wait_for()
    page.get_by_role("button", name="Change password").wait_for()
    page.get_by_role("button", name=f"Account menu for {scene.b.username}").click()
    page.get_by_role("menuitem", name="Logout").wait_for()
    screenshot = SCREENSHOTS / "accounts-user-b-account-page.png"
    page.screenshot(path=str(screenshot))
    record_property("screenshot", str(screenshot))
    page.keyboard.press("Escape")


def test_b_opens_a_50_mb_artifact_from_the_run_view(
    browser_page, scene: Scene, accounts_stack: MlflowStack, record_property
) -> None:
    page = browser_page
    page.goto(
        f"{accounts_stack.proxy_url}/#/experiments/{scene.experiment_id}/runs/{scene.run_id}/artifacts",
        wait_until="commit",
    )
    page.get_by_text("big.bin").first.click()
    page.get_by_text("50MB").first.wait_for()
    proxy_log = ProxyLog(accounts_stack.nginx_log)
    with page.expect_download() as download_info:
        page.locator(".mlflow-artifact-right button").first.click()  # the view's download button
    download = download_info.value
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    screenshot = SCREENSHOTS / "accounts-user-b-artifact-view.png"
    page.screenshot(path=str(screenshot))
    record_property("screenshot", str(screenshot))

    assert download.url.startswith(f"{accounts_stack.moto_endpoint}/{accounts_stack.bucket}/mlflow-artifacts/")
    saved = Path(download.path())
    assert saved.stat().st_size == ARTIFACT_BYTES
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == scene.sha256
    traffic = proxy_log.since()
    assert any("/mlflow-artifacts/presigned/" in request for request in traffic.requests), traffic.requests
    assert traffic.bytes_out < 1024 * 1024, "the artifact must not come through nginx"


def test_the_buckets_cors_rule_lets_the_ui_read_presigned_urls(
    browser_page, scene: Scene, accounts_stack: MlflowStack
) -> None:
    """A page from the proxy's origin reads a presigned URL only because the rule names that origin."""
    page = browser_page
    page.goto(accounts_stack.proxy_url + "/#/experiments", wait_until="commit")
    page.get_by_text(scene.visible).first.wait_for()
    fetch = """async ([path]) => {
        const r = await fetch(`ajax-api/2.0/mlflow-artifacts/presigned/${path}`);
        const url = (await r.json()).url;
        try {
            const s3 = await fetch(url, {headers: {Range: 'bytes=0-9'}});
            return [s3.status, (await s3.arrayBuffer()).byteLength];
        } catch (e) { return ['blocked', String(e)]; }
    }"""
    path = f"{scene.experiment_id}/{scene.run_id}/artifacts/big.bin"
    assert page.evaluate(fetch, [path]) == [206, 10]
    s3 = accounts_stack.moto.client("s3")
    s3.put_bucket_cors(
        Bucket=accounts_stack.bucket,
        CORSConfiguration={"CORSRules": artifact_cors_rules(["https://someone-else.example"])},
    )
    try:
        assert page.evaluate(fetch, [path])[0] == "blocked"
    finally:
        s3.put_bucket_cors(
            Bucket=accounts_stack.bucket,
            CORSConfiguration={"CORSRules": artifact_cors_rules([accounts_stack.proxy_url])},
        )


def test_b_sees_the_trace_a_logged_in_the_traces_tab(
    browser_page, scene: Scene, accounts_stack: MlflowStack, record_property
) -> None:
    """A trace A's client logged through the proxy lists in the experiment's Traces tab for B (READ),
    and opens on its span."""
    page = browser_page
    page.goto(f"{accounts_stack.proxy_url}/#/experiments/{scene.experiment_id}/traces", wait_until="commit")
    row = page.get_by_text(scene.trace_question).first
    row.wait_for()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    listed = SCREENSHOTS / "accounts-user-b-traces-tab.png"
    page.screenshot(path=str(listed))
    # The tab's first-visit tip ("Detect Issues in Your Traces") covers the list until dismissed.
    page.add_locator_handler(page.get_by_role("button", name="Got it"), lambda tip: tip.click())
    row.click()
    page.get_by_text(scene.trace_name).first.wait_for()
    opened = SCREENSHOTS / "accounts-user-b-trace-view.png"
    page.screenshot(path=str(opened))
    record_property("screenshot", f"{listed} {opened}")
