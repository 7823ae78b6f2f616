"""The judging page in a real browser: headless Chromium driven by Selenium (Debian's `chromium` and
`chromium-driver`) answers a study of 30 judgements with clicks and keys, at a phone's width and a
desktop's, and the database holds exactly those 30; screenshot saved (docs/img/judge.png)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from genlab.report.browser import FLAGS, find_chromium

pytest.importorskip("selenium", reason="selenium is not installed (pip install 'genlab[dev]')")
pytestmark = pytest.mark.skipif(find_chromium() is None or shutil.which("chromedriver") is None,
                                reason="chromium / chromedriver not installed (apt-get install chromium "
                                       "chromium-driver; .ci/run does it)")

GOAL = 30


@pytest.fixture
def server(tmp_path):
    from test_judge import running, tiny_runs

    from genlab.workflows.judge import Study, create_study

    create_study(tiny_runs(tmp_path), tmp_path / "study.sqlite", real=True, n=6, goal=GOAL, progress=False)
    study = Study(tmp_path / "study.sqlite", seed=0)
    with running(study) as url:
        yield url, study


@pytest.fixture
def browser(monkeypatch):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_AVOID_STATS", "true")  # Selenium Manager: no telemetry, no downloads
    monkeypatch.setenv("SE_OFFLINE", "true")
    opts = webdriver.ChromeOptions()
    for flag in FLAGS:
        if flag != "--remote-debugging-pipe":  # Selenium talks to chromedriver instead
            opts.add_argument(flag)
    opts.binary_location = find_chromium()
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=shutil.which("chromedriver")))
    yield driver
    driver.quit()


def state(driver) -> tuple[str, str]:
    return driver.execute_script("return [document.body.dataset.state, document.body.dataset.pair || '']")


def wait_ready(driver, last: str) -> str:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 20, poll_frequency=0.02).until(lambda d: state(d)[0] == "ready" and state(d)[1] != last)
    return state(driver)[1]


def test_a_person_answers_thirty_judgements_in_chromium(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    url, study = server
    driver = browser
    driver.set_window_size(390, 844)  # a phone's screen width
    driver.get(url)
    pair = wait_ready(driver, "")
    # at phone width: no sideways scrolling, the two images side by side and big enough to judge
    layout = driver.execute_script(
        "const r = (id) => document.getElementById(id).getBoundingClientRect();"
        "return {scroll: document.documentElement.scrollWidth, inner: window.innerWidth, l: r('img-left'), "
        "r: r('img-right'), nat: document.getElementById('img-left').naturalWidth}")
    assert layout["scroll"] <= layout["inner"]
    assert layout["l"]["width"] >= 120 and layout["l"]["right"] <= layout["r"]["left"]
    assert abs(layout["l"]["top"] - layout["r"]["top"]) < 1 and layout["nat"] == 8
    assert "which image looks more like a real handwritten digit" in driver.find_element(By.ID, "prompt").text.lower()
    body = driver.find_element(By.TAG_NAME, "body")
    seen, sent = [], []
    for i in range(GOAL):
        if i == 12:  # a desktop window, and the page as the docs show it
            driver.set_window_size(900, 640)
            from selenium.webdriver.common.action_chains import ActionChains

            ActionChains(driver).move_to_element(driver.find_element(By.ID, "prompt")).perform()  # no hover
            shot = tmp_path / "judge.png"
            driver.save_screenshot(str(shot))
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 5000
            print(f"screenshot: {shot}")
        if i == 20:  # the other task, by its tab
            driver.find_element(By.ID, "tab-realfake").click()
            pair = wait_ready(driver, pair)
            assert "real handwritten digit, or generated" in driver.find_element(By.ID, "prompt").text
            assert driver.find_element(By.ID, "img-single").get_property("naturalWidth") == 8
        assert driver.find_element(By.ID, "count").text == f"{i} / {GOAL}"
        seen.append(pair)
        if i < 20:  # pairwise: clicks and both key sets
            how = i % 4
            choice = "left" if how in (0, 2) else "right"
            if how == 0:
                driver.find_element(By.ID, "left").click()
            elif how == 1:
                driver.find_element(By.ID, "right").click()
            else:
                body.send_keys(Keys.ARROW_LEFT if how == 2 else "l")
        else:  # real or generated: keys R / G, and the buttons
            choice = "real" if i % 2 else "generated"
            if i % 3 == 0:
                driver.find_element(By.ID, choice).click()
            else:
                body.send_keys("r" if choice == "real" else "g")
        sent.append(choice)
        if i < GOAL - 1:
            pair = wait_ready(driver, pair)
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 20).until(lambda d: state(d)[0] == "done")
    assert driver.find_element(By.ID, "count").text == f"{GOAL} / {GOAL}"
    assert f"all {GOAL}" in driver.find_element(By.ID, "done").text
    # the database holds exactly these 30: the pairs this browser was shown, with its answers, in order
    rows = study.con.execute("SELECT served, choice, task, rater FROM judgements ORDER BY id").fetchall()
    assert [r[0] for r in rows] == seen and [r[1] for r in rows] == sent
    assert [r[2] for r in rows] == ["pairwise"] * 20 + ["realfake"] * 10 and len({r[3] for r in rows}) == 1
    assert len(set(seen)) == GOAL
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
    if os.environ.get("GENLAB_DOCS_SCREENSHOT"):  # refresh the docs' picture
        Path(os.environ["GENLAB_DOCS_SCREENSHOT"]).write_bytes((tmp_path / "judge.png").read_bytes())
