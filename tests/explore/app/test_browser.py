"""The app in a real browser: headless Chromium drives `birdemb app` on a small real store
(9 xc10 clips of 3 species, extracted with the real BirdNET): every page opens, a window's
audio element loads real WAV bytes, search answers, three windows are labelled, a retrain runs,
and the annotations file and the new run directory are checked. BIRDEMB_SCREENSHOTS=1 also
saves each page to docs/images/app-<page>.png (`make screenshots`)."""
from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.paths import REPOSITORY

CHROMIUM, DRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
SPECIES = ("blkpho", "caltow", "houspa")
SHOTS = REPOSITORY / "docs" / "images"


@pytest.fixture(scope="module")
def real_store(xc10, tmp_path_factory):
    from birdemb.extract.job import ExtractConfig, extract

    root = tmp_path_factory.mktemp("app")
    audio = root / "train_audio"  # copies: the store's audio folder is where the app may play from
    for code in SPECIES:
        (audio / code).mkdir(parents=True)
        for clip in sorted((xc10 / "train_audio" / code).glob("*.mp3"))[:3]:
            shutil.copy(clip, audio / code / clip.name)
    extract(ExtractConfig(audio=str(audio), store=str(root / "store"), model="birdnet", dataset="train",
                          metadata=str(xc10 / "train_metadata.csv"), workers=1, progress=False))
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app(real_store, xc10):
    port = free_port()
    log = open(real_store / "app.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "birdemb.commands.app", "--store", str(real_store / "store"), "--workdir",
         str(real_store / "work"), "--taxonomy", str(xc10 / "eBird_Taxonomy_v2021.csv"), "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, cwd=real_store)
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            if urllib.request.urlopen(url + "/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.5)
    else:
        process.kill()
        pytest.fail("the app did not start: " + (real_store / "app.log").read_text()[-2000:])
    yield url
    process.terminate()
    process.wait(20)
    log.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (CHROMIUM.is_file() and DRIVER.is_file()):
        pytest.skip("Debian's chromium and chromium-driver are not installed (make browser)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1000", f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(DRIVER)), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def wait_for(condition, timeout: float = 60, what: str = ""):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            found = condition()
        except Exception:
            found = None
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def page_text(driver) -> str:
    return driver.find_element("tag name", "body").text


def open_page(driver, name: str) -> None:
    label = wait_for(lambda: driver.find_element(
        "xpath", f"//section[@data-testid='stSidebar']//label[.//p[normalize-space()='{name}']]"), what=name)
    label.click()
    wait_for(lambda: driver.find_element("xpath", f"//h2[contains(., '{name.split()[0]}')]"), what=f"{name} page")
    wait_for(lambda: not driver.find_elements("css selector", "[data-testid='stStatusWidget']") or
             "Running" not in page_text(driver), 60, "the page to finish")
    time.sleep(1.0)


def shoot(driver, name: str) -> None:
    if os.environ.get("BIRDEMB_SCREENSHOTS") == "1":
        SHOTS.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(SHOTS / f"app-{name}.png"))


def wav_of(url: str):
    import soundfile as sf

    body = urllib.request.urlopen(url, timeout=10).read()
    assert body[:4] == b"RIFF" and body[8:12] == b"WAVE"
    samples, rate = sf.read(io.BytesIO(body))
    return samples, rate


def test_every_page_in_a_real_browser(app, browser, real_store):
    driver = browser
    driver.get(app)
    wait_for(lambda: "Overview" in page_text(driver) and "windows" in page_text(driver), 120, "the overview")
    time.sleep(1.0)
    assert "birdnet" in page_text(driver)
    shoot(driver, "overview")

    open_page(driver, "Windows")
    audio = wait_for(lambda: driver.find_elements("tag name", "audio"), what="an audio player")
    samples, rate = wav_of(audio[0].get_attribute("src"))
    assert abs(len(samples) / rate - 5.0) < 0.05 and np.abs(samples).max() > 0.01  # a real 5 s window, not silence
    driver.execute_script("arguments[0].load()", audio[0])
    duration = wait_for(lambda: driver.execute_script(
        "return arguments[0].readyState >= 1 ? arguments[0].duration : 0", audio[0]), 30, "the audio to load")
    assert abs(duration - 5.0) < 0.05
    shoot(driver, "windows")

    open_page(driver, "Map")
    wait_for(lambda: driver.find_elements("css selector", "[data-testid='stVegaLiteChart'] canvas, "
                                                          "[data-testid='stVegaLiteChart'] svg"), 120, "the map")
    time.sleep(1.5)
    shoot(driver, "map")

    open_page(driver, "Search")
    driver.find_element("xpath", "//button[.//p[normalize-space()='Search']]").click()
    wait_for(lambda: "nearest windows by" in page_text(driver), 60, "search results")
    assert len(driver.find_elements("tag name", "audio")) >= 2  # the query and its neighbours
    shoot(driver, "search")

    open_page(driver, "Review and label")
    decisions = real_store / "work" / "annotations.decisions.csv"
    for n in range(1, 4):
        wait_for(lambda: driver.find_elements("xpath", "//button[.//p[normalize-space()='yes']]"), what="yes")
        driver.find_elements("xpath", "//button[.//p[normalize-space()='yes']]")[0].click()
        wait_for(lambda: decisions.is_file() and len(decisions.read_text().splitlines()) == n + 1, 30,
                 f"label {n} saved")
        time.sleep(1.0)
    shoot(driver, "review")
    lines = (real_store / "work" / "annotations.csv").read_text().splitlines()
    assert lines[0] == "file,start_s,end_s,label" and len(lines) == 4
    assert len({tuple(line.split(",")[:2]) for line in lines[1:]}) == 3  # three different windows

    open_page(driver, "Retrain")
    driver.find_element("xpath", "//label[.//p[normalize-space()='species']]").click()
    time.sleep(1.0)
    driver.find_element("xpath", "//button[.//p[normalize-space()='Retrain']]").click()
    wait_for(lambda: "head macro AUROC" in page_text(driver) or "failed" in page_text(driver), 240, "the retrain")
    assert "new run:" in page_text(driver), page_text(driver)[-2000:]
    time.sleep(1.0)
    shoot(driver, "retrain")
    runs = sorted(p for p in (real_store / "work" / "runs").iterdir() if p.is_dir())
    assert len(runs) == 1
    metrics = json.loads((runs[0] / "metrics.json").read_text())
    assert (runs[0] / "head.npz").is_file() and metrics["truth"] == "annotations"
