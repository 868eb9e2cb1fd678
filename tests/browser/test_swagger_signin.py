"""Sign in from Swagger UI in a real headless chromium, against the lab (``make test-browser``).

The lab (issuer only) and examples/fastapi_service.py run on free 127.0.0.1 ports. The
browser opens ``/docs``, clicks Authorize, signs a lab user in on the issuer's page (a
popup, as Swagger UI opens it), and back in Swagger UI runs "Try it out" / Execute on a
protected route, expecting 200. Chromium and chromedriver are Debian's; selenium drives
them through ``/usr/bin/chromedriver`` and never downloads anything. Every step waits for
its element explicitly (bounded); on failure a screenshot and the page source are kept.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from examples.fastapi_service import Settings, create_app
from examples.lab.runtime import Lab, LabThread
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from .conftest import FAILED

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
#: Longest wait for any one step (page load, popup, token exchange, response).
STEP_TIMEOUT = 30.0
#: GET /secrets in Swagger UI (needs Secrets.Read: the user's delegated scope).
OPERATION = "#operations-default-list_secrets_secrets_get"
ADA = "e1f2a3b4-c5d6-4e7f-8a9b-0c1d2e3f4a5b"  # Ada Lovelace in examples/lab/default.toml


@pytest.fixture
def service_url(tmp_path: Path) -> Iterator[str]:
    """The lab's issuer and the example service (reading the lab's endpoints at startup)."""
    thread = LabThread(Lab(tmp_path / "lab", base_port=0, log=None, services=()))
    with thread as lab:
        yield thread.serve_app("fastapi-service", create_app(Settings.from_env(lab.env())))


@pytest.fixture
def browser(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[WebDriver]:
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.fail(
            f"{CHROMIUM} or {CHROMEDRIVER} missing: apt-get install chromium chromium-driver"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(STEP_TIMEOUT)
    driver.set_script_timeout(STEP_TIMEOUT)
    try:
        yield driver
    finally:
        if request.node.stash.get(FAILED, False):
            keep = tmp_path / "failure"
            keep.mkdir(exist_ok=True)
            for handle in driver.window_handles:
                driver.switch_to.window(handle)
                driver.save_screenshot(str(keep / f"{handle}.png"))
                (keep / f"{handle}.html").write_text(driver.page_source)
            print(f"browser state kept in {keep}")
        driver.quit()


def wait_for(driver: WebDriver, by: str, selector: str, *, clickable: bool = True) -> WebElement:
    condition = ec.element_to_be_clickable if clickable else ec.visibility_of_element_located
    found: WebElement = WebDriverWait(driver, STEP_TIMEOUT).until(condition((by, selector)))
    return found


def test_sign_in_from_swagger_ui_and_call_a_protected_route(
    browser: WebDriver, service_url: str
) -> None:
    browser.get(service_url + "/docs")
    wait_for(browser, By.CSS_SELECTOR, "button.btn.authorize").click()

    # The Authorize dialog: the OAuth2 flow, client id and scopes preset by initOAuth.
    dialog = wait_for(browser, By.CSS_SELECTOR, ".dialog-ux .modal-ux", clickable=False)
    assert "authorizationCode" in dialog.text
    main = browser.current_window_handle
    wait_for(
        browser, By.CSS_SELECTOR, ".dialog-ux .auth-btn-wrapper .btn.modal-btn.authorize"
    ).click()

    # The lab's sign-in page, in the popup Swagger UI opened.
    WebDriverWait(browser, STEP_TIMEOUT).until(ec.number_of_windows_to_be(2))
    popup = next(h for h in browser.window_handles if h != main)
    browser.switch_to.window(popup)
    wait_for(browser, By.ID, f"signin-{ADA}").click()

    # The redirect page hands the code to Swagger UI and closes; Swagger UI redeems it.
    WebDriverWait(browser, STEP_TIMEOUT).until(ec.number_of_windows_to_be(1))
    browser.switch_to.window(main)
    logout = wait_for(
        browser, By.XPATH, "//div[contains(@class,'dialog-ux')]//button[normalize-space()='Logout']"
    )
    assert logout.is_displayed()
    wait_for(browser, By.CSS_SELECTOR, ".dialog-ux button.btn-done").click()
    WebDriverWait(browser, STEP_TIMEOUT).until(
        ec.invisibility_of_element_located((By.CSS_SELECTOR, ".dialog-ux"))
    )

    # Try it out on GET /secrets (needs Secrets.Read: the user's delegated scope).
    wait_for(browser, By.CSS_SELECTOR, f"{OPERATION} .opblock-summary").click()
    wait_for(browser, By.CSS_SELECTOR, f"{OPERATION} .try-out__btn").click()
    wait_for(browser, By.CSS_SELECTOR, f"{OPERATION} .btn.execute").click()
    status = wait_for(
        browser,
        By.CSS_SELECTOR,
        f"{OPERATION} .live-responses-table tbody .response-col_status",
        clickable=False,
    )
    assert status.text.strip() == "200"
    curl = wait_for(
        browser,
        By.CSS_SELECTOR,
        f"{OPERATION} .curl",
        clickable=False,
    )
    assert "Authorization: Bearer ey" in curl.text
