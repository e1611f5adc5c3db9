"""The pages in a real headless browser (Debian Chromium + chromedriver, Selenium) against the app on
a real socket: the privacy center's switch and tag deletion change the next list, and its erase button
empties the history it shows and makes the next list `history_erased`; a front-screen pin
proposed in the console is served only after a second account approves it; nobody approves their
own proposal; an auditor sees everything and changes nothing. Each page is saved as a screenshot."""

from __future__ import annotations

import httpx
import polars as pl
import pytest
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

from compliance.logstore import query
from tests.web.conftest import PASSWORD

pytestmark = pytest.mark.e2e
WAIT_S = 60


def recommend(site, user: str, surface: str = "home", k: int = 10) -> dict:
    response = httpx.post(f"{site.url}/v1/recommendations", json={"user_id": user, "surface": surface, "k": k}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def document_id(driver):
    """The current document's time origin: a new page has a new one; False while it is loading."""
    return driver.execute_script("return document.readyState === 'complete' && performance.timeOrigin")


def wait_for_new_page(driver, before) -> None:
    """Bounded wait until a new document has loaded. Asking while the browser navigates can fail
    (the old document is going away): such an answer counts as "not yet"."""
    WebDriverWait(driver, WAIT_S, ignored_exceptions=(WebDriverException,)).until(
        lambda d: document_id(d) not in (False, before))


def submit(driver, element) -> None:
    """Click a submit button and wait (bounded) for the page it leads to."""
    before = document_id(driver)
    element.click()
    wait_for_new_page(driver, before)


def open_page(driver, url: str) -> None:
    driver.get(url)
    WebDriverWait(driver, WAIT_S).until(EC.presence_of_element_located((By.TAG_NAME, "h1")))


def shot(driver, screenshots, name: str) -> None:
    driver.save_screenshot(str(screenshots / f"{name}.png"))


def me_login(driver, site, user: str) -> None:
    open_page(driver, f"{site.url}/me/login")
    driver.find_element(By.ID, "user_id").send_keys(user)
    submit(driver, driver.find_element(By.ID, "login"))
    assert driver.find_element(By.ID, "user").text == user


def console_login(driver, site, name: str) -> None:
    open_page(driver, f"{site.url}/console/login")
    driver.find_element(By.ID, "name").send_keys(name)
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    submit(driver, driver.find_element(By.ID, "login"))
    assert driver.find_element(By.ID, "account").text == name


def console_logout(driver) -> None:
    submit(driver, driver.find_element(By.CSS_SELECTOR, "form[action='/console/logout'] button"))


def forged_post(driver, action: str, fields: dict[str, str]) -> None:
    """Post a form the page does not offer (with this session's valid CSRF token), as a user with
    the browser's developer tools could: the server, not the page, must refuse."""
    script = """
        const [action, fields] = arguments;
        const form = document.createElement('form');
        form.method = 'post'; form.action = action;
        const token = document.querySelector('input[name=csrf_token]').value;
        for (const [name, value] of Object.entries({...fields, csrf_token: token})) {
            const input = document.createElement('input');
            input.type = 'hidden'; input.name = name; input.value = value; form.appendChild(input);
        }
        document.body.appendChild(form); form.submit();"""
    before = document_id(driver)
    driver.execute_script(script, action, fields)
    wait_for_new_page(driver, before)


def test_switching_personalization_off_makes_the_next_list_non_personalized(site, browser, adults, screenshots):
    user = adults[0]
    assert recommend(site, user)["mode"] == "personalized"
    me_login(browser, site, user)
    assert browser.find_elements(By.CSS_SELECTOR, "table.served-list td.reason"), "the last list is shown with reasons"
    shot(browser, screenshots, "me-privacy-center")
    toggle = browser.find_element(By.ID, "personalization-toggle")
    assert "Switch off Personalized" in toggle.text
    submit(browser, toggle)
    assert "Off" in browser.find_element(By.ID, "personalization-state").text
    assert "Switch on Personalized" in browser.find_element(By.ID, "personalization-toggle").text
    shot(browser, screenshots, "me-personalization-off")

    after = recommend(site, user)
    assert after["mode"] == "non_personalized"
    browser.refresh()
    WebDriverWait(browser, WAIT_S).until(EC.presence_of_element_located((By.CSS_SELECTOR, "table.served-list")))
    assert browser.find_element(By.CSS_SELECTOR, "table.served-list").get_attribute("data-mode") == "non_personalized"

    submit(browser, browser.find_element(By.ID, "personalization-toggle"))  # and back on, with the same control
    assert recommend(site, user)["mode"] == "personalized"


def test_a_deleted_tag_is_gone_on_reload_and_from_the_next_lists_reasons(site, browser, adults):
    user = adults[1]
    me_login(browser, site, user)
    first_row = browser.find_element(By.CSS_SELECTOR, "#tags tbody tr")
    tag = first_row.find_element(By.TAG_NAME, "td").text
    assert "history" in first_row.text  # where the tag came from
    submit(browser, browser.find_element(By.ID, f"delete-{tag}"))
    assert "deleted" in browser.find_element(By.ID, "message").text
    browser.refresh()
    WebDriverWait(browser, WAIT_S).until(EC.presence_of_element_located((By.ID, "deleted-tags")))
    assert tag not in [row.find_element(By.TAG_NAME, "td").text for row in browser.find_elements(By.CSS_SELECTOR, "#tags tbody tr")]
    assert tag in browser.find_element(By.ID, "deleted-tags").text

    listed = recommend(site, user, surface="feed", k=20)
    assert listed["mode"] == "personalized"
    assert all(tag not in item["reason"]["text"] for item in listed["items"])
    browser.refresh()
    WebDriverWait(browser, WAIT_S).until(EC.presence_of_element_located((By.CSS_SELECTOR, "table.served-list")))
    newest = browser.find_element(By.CSS_SELECTOR, "table.served-list")
    assert newest.get_attribute("data-request-id") == listed["request_id"]
    assert all(tag not in cell.text for cell in newest.find_elements(By.CSS_SELECTOR, "td.reason"))


def test_erasing_my_history_on_the_privacy_center_empties_it_and_the_next_list_is_history_erased(site, browser, adults,
                                                                                                   trained, screenshots):
    user = adults[2]
    items = [str(i) for i in trained[0].item_ids[:3]]
    now = site.services.clock().isoformat()
    events = [{"event_id": f"browser-{user}-{n}", "user_id": user, "item_id": item, "type": "like", "ts": now}
              for n, item in enumerate(items)]
    assert httpx.post(f"{site.url}/v1/events", json={"events": events}, timeout=60).json()["accepted"] == 3
    assert recommend(site, user)["mode"] == "personalized"
    me_login(browser, site, user)
    assert len(browser.find_elements(By.CSS_SELECTOR, "#history tbody tr")) == 3
    shot(browser, screenshots, "me-history")
    submit(browser, browser.find_element(By.ID, "erase-history"))
    message = browser.find_element(By.ID, "message").text
    assert "history erased" in message and "3 events" in message and "is kept" in message
    assert not browser.find_elements(By.CSS_SELECTOR, "#history tbody tr")
    assert "You erased your history" in browser.find_element(By.ID, "history-erased").text
    assert recommend(site, user)["mode_reason"] == "history_erased"


def test_a_front_screen_pin_is_served_only_after_a_second_account_approves(site, browser, trained, screenshots, tmp_path):
    bundle, _ = trained
    visitor = "first-visit-1"
    before = [i["item_id"] for i in recommend(site, visitor)["items"]]
    item = bundle.items.filter(pl.col("minor_safe") & ~pl.col("flagged") & ~pl.col("item_id").is_in(before))["item_id"][0]

    console_login(browser, site, "alice")
    Select(browser.find_element(By.ID, "surface")).select_by_value("home")  # the kind's default is pin
    browser.find_element(By.ID, "item_id").send_keys(item)
    browser.find_element(By.ID, "position").send_keys("2")
    browser.find_element(By.ID, "reason").send_keys("public-service notice")
    submit(browser, browser.find_element(By.ID, "propose-submit"))
    assert "another approver" in browser.find_element(By.ID, "message").text
    pending_id = browser.find_element(By.CSS_SELECTOR, "#pending tbody tr td").text
    shot(browser, screenshots, "console-pending")
    assert recommend(site, "first-visit-2")["items"][1]["item_id"] != item  # nothing changes yet

    # the proposer is offered no approval, and a forged one is refused by the server
    assert not browser.find_elements(By.ID, f"approve-{pending_id}")
    assert browser.find_element(By.ID, f"own-{pending_id}")
    forged_post(browser, f"/console/interventions/{pending_id}/approve", {"reason": "approving my own"})
    assert "two-person rule" in browser.find_element(By.ID, "error").text
    assert recommend(site, "first-visit-3")["items"][1]["item_id"] != item
    console_logout(browser)

    console_login(browser, site, "bob")
    browser.find_element(By.ID, f"reason-{pending_id}").send_keys("checked the notice with legal")
    submit(browser, browser.find_element(By.ID, f"approve-{pending_id}"))
    assert "approved" in browser.find_element(By.ID, "message").text
    active = browser.find_element(By.ID, f"active-{pending_id}").text
    assert "alice" in active and "bob" in active and "checked the notice with legal" in active
    shot(browser, screenshots, "console-interventions")

    served = recommend(site, "first-visit-4")["items"][1]
    assert (served["item_id"], served["slot"]) == (item, "pinned")
    logged = str(query(tmp_path / "logs", kind="intervention").to_dicts())
    assert '"propose"' in logged and '"approve"' in logged and '"alice"' in logged and '"bob"' in logged


def test_an_auditor_sees_everything_and_changes_nothing(site, browser, adults, screenshots):
    services = site.services
    user = adults[2]
    httpx.post(f"{site.url}/v1/complaints", json={"kind": "complaint", "subject_type": "other", "user_id": user,
                                                  "text": "the list repeats itself"}, timeout=30).raise_for_status()
    console_login(browser, site, "olga")
    Select(browser.find_element(By.ID, "surface")).select_by_value("home")
    browser.find_element(By.ID, "item_id").send_keys(str(site.services.catalog.bundle.item_ids[3]))
    browser.find_element(By.ID, "position").send_keys("4")
    browser.find_element(By.ID, "reason").send_keys("campaign week")
    submit(browser, browser.find_element(By.ID, "propose-submit"))
    console_logout(browser)
    interventions_before = services.store.list_interventions(include_inactive=True)
    complaints_before = services.store.list_complaints()

    console_login(browser, site, "audrey")
    assert browser.find_element(By.ID, "role").text == "auditor"
    assert browser.find_elements(By.CSS_SELECTOR, "#pending tbody tr")  # sees the pending proposal
    assert browser.find_element(By.ID, "read-only")
    assert not browser.find_elements(By.ID, "propose") and not browser.find_elements(By.CSS_SELECTOR, "button[id^=approve-]")
    shot(browser, screenshots, "console-auditor")
    open_page(browser, f"{site.url}/console/complaints")
    assert "the list repeats itself" in browser.find_element(By.ID, "complaints").text
    assert not browser.find_elements(By.CSS_SELECTOR, "button[id^=ack-]")
    shot(browser, screenshots, "console-complaints")
    open_page(browser, f"{site.url}/console/records")
    assert browser.find_element(By.ID, "logs-status").text.startswith("OK")
    assert browser.find_element(By.ID, "filing-download")
    shot(browser, screenshots, "console-records")

    pending_id = str(interventions_before[-1]["id"])
    complaint_id = complaints_before[0]["id"]
    for action, fields in [
        ("/console/interventions", {"kind": "block", "item_id": str(services.catalog.bundle.item_ids[5]), "reason": "block it"}),
        (f"/console/interventions/{pending_id}/approve", {"reason": "fine by me"}),
        (f"/console/interventions/{pending_id}/revoke", {}),
        (f"/console/complaints/{complaint_id}/acknowledge", {}),
    ]:
        forged_post(browser, action, fields)
        assert "auditor" in browser.find_element(By.ID, "error").text or "only an approver" in browser.find_element(By.ID, "error").text
    assert services.store.list_interventions(include_inactive=True) == interventions_before
    assert services.store.list_complaints() == complaints_before


def test_transparency_page_links_to_the_privacy_center(site, browser, screenshots):
    open_page(browser, f"{site.url}/transparency")
    link = browser.find_element(By.ID, "privacy-center")
    assert "Open My recommendations" in link.text
    assert "switch off Personalized" in link.find_element(By.XPATH, "..").text
    submit(browser, link)
    assert browser.current_url.endswith("/me/login")
    shot(browser, screenshots, "me-login")
