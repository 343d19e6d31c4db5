"""The review service as a person uses it: headless Debian chromium (Selenium + chromium-driver, nothing
downloaded) against `tiergate review` (a real uvicorn process, SQLite store) and a real local Triton
serving the tiny model. It logs in with a reviewer token, classifies a text on the try-it page (the
scores shown are Triton's), labels two queue items submitted through FeedbackClient (one with the Y
shortcut, one corrected with C), looks at disagreements and agreement, and finds both reviews in
`tiergate feedback export`. A screenshot of each page is written; with TIERGATE_WRITE_SCREENSHOTS=1
they replace docs/screenshots/ (the README shows them).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.feedback_helpers import new_store
from tiergate.client import FeedbackClient, ModerationClient
from tiergate.paths import PROJECT_ROOT
from tiergate.serving.server import TritonServer, free_port
from tiergate.taxonomy import Taxonomy

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOTS = PROJECT_ROOT / "docs" / "screenshots"
INSULT = "you are a useless idiot"
FRIENDLY = "are we still on for coffee at the cafe on friday?"
TRY_TEXT = "shut up, nobody wants you here, you idiot"


@dataclass
class Review:
    url: str
    db: str
    tokens: dict[str, str]
    log: Path


@pytest.fixture(scope="module")
def triton(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    """Triton on the tiny test model; TIERGATE_REVIEW_REPOSITORY names another (verified) model repository
    instead, e.g. runs/latest/model_repository for the README's screenshots, where an untrained model's
    scores would only confuse."""
    chosen = os.environ.get("TIERGATE_REVIEW_REPOSITORY")
    repository = Path(chosen) if chosen else request.getfixturevalue("tiny_repository")
    with TritonServer(repository, tmp_path_factory.mktemp("triton")) as server:
        yield server


@pytest.fixture(scope="module")
def review(triton: TritonServer, taxonomy: Taxonomy, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Review]:
    """`tiergate review` as a process (it migrates the store up, which is a no-op after the tokens were made)."""
    folder = tmp_path_factory.mktemp("review")
    db = f"sqlite:///{folder / 'feedback.db'}"
    store = new_store(db, taxonomy)
    tokens = {name: store.create_token(name, [scope], "test")[0] for name, scope in
              (("alice", "review"), ("bob", "review"), ("carol", "review"), ("chat-service", "submit"))}  # fmt: skip
    store.close()
    port = free_port()
    log = folder / "review.log"
    command = [sys.executable, "-m", "tiergate.cli.main", "review", "--port", str(port)]
    command += ["--triton-url", f"http://{triton.http_url}"]
    env = {**os.environ, "TIERGATE_FEEDBACK_DB": db}
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"tiergate review exited {process.returncode}: {log.read_text()[-2000:]}"
            try:
                if httpx.get(f"{url}/api/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"tiergate review not ready in 60 s: {log.read_text()[-2000:]}"
            time.sleep(0.3)
        yield Review(url, db, tokens, log)
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing: apt-get install -y chromium chromium-driver (.ci/run does)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
                     "--disable-default-apps", "--disable-extensions"):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver: Any, folder: Path, name: str) -> Path:
    """The page as shown, down to the end of its content; copied into docs/screenshots/ when asked."""
    bottom = driver.execute_script("return Math.ceil(document.querySelector('main').getBoundingClientRect().bottom)")
    metrics = {"width": 1280, "height": max(480, min(int(bottom), 4000)), "deviceScaleFactor": 1, "mobile": False}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
    path = folder / f"{name}.png"
    try:
        assert driver.save_screenshot(str(path))
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000
    if os.environ.get("TIERGATE_WRITE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, SCREENSHOTS / path.name)
    return path


def test_a_reviewer_classifies_labels_and_the_labels_reach_the_export(
    browser: Any, review: Review, triton: TritonServer, taxonomy: Taxonomy, tmp_path: Path
) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as shown
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    # A page being replaced (a form post's redirect) leaves stale elements behind: look again.
    wait = WebDriverWait(driver, 30, ignored_exceptions=(StaleElementReferenceException,))

    def find(selector: str) -> Any:
        return wait.until(shown.presence_of_element_located((By.CSS_SELECTOR, selector)))

    def flash() -> str:
        return str(find("#flash").text)

    # Items for the queue, sent as a service sends them: through FeedbackClient, with Triton's prediction.
    with ModerationClient(triton.http_url) as model:
        insult, friendly = model.classify([INSULT, FRIENDLY], "general/message")
        expected = model.classify([TRY_TEXT], "adult/message")[0]
        version = model.model_version
    with FeedbackClient(review.url, review.tokens["chat-service"]) as feedback:
        first = feedback.submit(INSULT, "general/message", predicted=insult, labels=["harassment"], reason="user report")
        second = feedback.submit(FRIENDLY, "general/message", predicted=friendly, reason="appeal", source="appeal")
        disputed = feedback.submit("keep talking and see what happens", "general/message", reason="moderator", source="override")
        agreed = feedback.submit("buy cheap followers now, click the link", "general/bio", reason="user report")
    # Two other reviewers labelled two more items before (one in dispute) for the agreement pages.
    threats = {"bob": "positive", "carol": "negative"}
    for reviewer in ("bob", "carol"):
        disputed_labels = {"threats": threats[reviewer], "harassment": "positive"}
        for item, given in ((disputed.id, disputed_labels), (agreed.id, {"spam": "positive", "threats": "negative"})):
            answer = httpx.post(
                f"{review.url}/api/v1/items/{item}/reviews",
                json={"labels": given},
                headers={"Authorization": f"Bearer {review.tokens[reviewer]}"},
                timeout=10,
            )
            assert answer.status_code == 201, answer.text

    # Log in: an unauthenticated page sends the browser to the login.
    driver.get(f"{review.url}/try")
    find("#token")
    assert "/login?next=/try" in driver.current_url
    screenshot(driver, tmp_path, "login")
    find("#token").send_keys(review.tokens["alice"])
    find("#login").click()

    # Try it: the scores on the page are the live Triton ensemble's.
    find("#text").send_keys(TRY_TEXT)
    Select(find("#audience")).select_by_value("adult")
    Select(find("#surface")).select_by_value("message")
    find("#classify").click()
    find("#result")
    rows = driver.find_elements(By.CSS_SELECTOR, "#result tr[data-category]")
    page_scores = {row.get_attribute("data-category"): float(row.find_element(By.CSS_SELECTOR, "td.score").text) for row in rows}
    assert set(page_scores) == set(taxonomy.labels)
    for name, score in expected.scores.items():
        assert abs(page_scores[name] - score) <= 0.0005, name
    shown_flags = find("#flags").text
    assert shown_flags == (", ".join(expected.flags) if expected.flags else "none")
    assert f"model {version}" in find("#result h2").text
    screenshot(driver, tmp_path, "try-it")

    # The queue: the first item confirmed with the Y shortcut, the second corrected and sent with C.
    driver.get(f"{review.url}/queue")
    assert find("#item-text").text == INSULT
    screenshot(driver, tmp_path, "queue")
    ActionChains(driver).send_keys("y").perform()
    wait.until(lambda _: f"item {first.id} confirmed" in flash())
    assert find("#item-text").text == FRIENDLY
    find('input[name="label.harassment"][value="negative"]').click()
    find('input[name="label.spam"][value="negative"]').click()
    ActionChains(driver).send_keys("c").perform()
    wait.until(lambda _: f"item {second.id} labelled" in flash())
    find("#empty")

    driver.get(f"{review.url}/disagreements")
    assert "keep talking and see what happens" in find("#disagreements").text
    screenshot(driver, tmp_path, "disagreements")
    driver.get(f"{review.url}/agreement")
    assert find('tr[data-category="spam"] td.kappa').text == "n/a"
    screenshot(driver, tmp_path, "agreement")
    # The pages ran under their Content-Security-Policy without a refusal (the shortcuts' script loaded: it worked).
    severe = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert severe == []

    # Both reviews are in the export, as a dataset for the next training run.
    out = tmp_path / "export"
    done = subprocess.run(
        [sys.executable, "-m", "tiergate.cli.main", "feedback", "export", "--db", review.db, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    provenance = {row["item"]: row for row in map(json.loads, (out / "provenance.jsonl").read_text().splitlines())}
    assert {first.id, second.id} <= set(provenance)
    assert provenance[first.id]["reviewers"] == 1 and provenance[second.id]["reviewers"] == 1
    records = {row["id"]: row for row in map(json.loads, (out / "records.jsonl").read_text().splitlines())}
    texts = {records[row["record"]]["text"]: records[row["record"]] for row in provenance.values()}
    assert INSULT in texts and FRIENDLY in texts
    assert "harassment" not in texts[FRIENDLY]["labels"]
    assert set(insult.flags) == set(texts[INSULT]["labels"])  # confirmed: exactly the model's flags are positive
    assert b"tgf_" not in review.log.read_bytes(), "a token reached the service's log"
