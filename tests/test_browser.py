"""The `cnnlab serve` page in a real browser: headless Debian Chromium driven by Selenium uploads a real MNIST
digit and draws one on the canvas, and the page must show the right top-1 class for both.

Chromium and its driver are Debian packages; when they are missing and we are root, the test installs them
with apt-get (and skips, saying why, when it cannot). Screenshots go to $CNNLAB_SCREENSHOTS, else pytest's
temporary folder; their paths are printed.
"""

import math
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from test_serve import png_bytes, running_server

from cnnlab.data import datasets
from cnnlab.serving import predict

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
# Headless as root in a container; the last four keep Chromium from phoning home, which a closed network
# answers with refused connections that slow the start down.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-dev-shm-usage", "--window-size=1100,720", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-default-apps"]


def install_chromium():
    """None once /usr/bin/chromium and /usr/bin/chromedriver exist, else why they cannot be had."""
    if CHROMIUM.exists() and CHROMEDRIVER.exists():
        return None
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        return "chromium and chromium-driver are not installed, and installing them needs apt-get as root"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}

    def apt(*args):
        return subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=300", *args], env=env, capture_output=True,
                              text=True, timeout=1200)

    install = ("install", "-y", "--no-install-recommends", "chromium", "chromium-driver")
    done = apt(*install)
    if done.returncode != 0:  # package lists missing or stale: refresh them, only then
        apt("update")
        done = apt(*install)
    if done.returncode != 0 or not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        return f"apt-get install chromium chromium-driver failed: {(done.stderr.strip() or 'no output')[-300:]}"
    return None


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium missing: pip install -e '.[test]'")
    from selenium.webdriver.chrome.service import Service
    why_not = install_chromium()
    if why_not:
        pytest.skip(why_not)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"]:
        options.add_argument(flag)
    # The driver's path is given, so Selenium Manager never tries to download one.
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def page(real_data, small_cnn_run, browser):
    """(browser on the served page, run folder, real MNIST test images and labels)."""
    run = small_cnn_run
    test = datasets.load("mnist", data_dir=str(real_data)).test
    with running_server(run) as port:
        browser.get(f"http://127.0.0.1:{port}/")
        wait(browser, lambda d: d.execute_script("return document.body.dataset.ready") == "true")
        yield browser, run, test


def wait(driver, condition, seconds=30):
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(driver, seconds).until(condition)


def next_result(driver, act) -> str:
    """Do `act`, wait for the page's next answer, return the top-1 class it shows (failing on a shown error)."""
    from selenium.webdriver.common.by import By
    result = driver.find_element(By.ID, "result")
    seq = int(result.get_attribute("data-seq"))
    act()
    wait(driver, lambda d: int(result.get_attribute("data-seq")) > seq)
    assert driver.find_element(By.ID, "error").text == ""
    assert len(driver.find_elements(By.CSS_SELECTOR, "#bars .row")) == 5
    return driver.find_element(By.ID, "top1").text


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("CNNLAB_SCREENSHOTS") or tmp_path_factory.getbasetemp() / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def screenshot(driver, path: Path) -> Path:
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    return path


def test_upload_shows_the_top_class(page, screenshots, tmp_path):
    from selenium.webdriver.common.by import By
    driver, run, test = page
    model, about = predict.load_model(run)
    for i in range(50):  # the first test digit the model gets right: the page must show what the API says
        blob = png_bytes(test.x[i, 0].numpy())
        (tmp_path / "digit.png").write_bytes(blob)
        top1 = predict.classify_files(model, about, [tmp_path / "digit.png"], 1)[0]["top"][0]["class"]
        if top1 == str(int(test.y[i])):
            break
    (tmp_path / "digit.png").write_bytes(blob)
    shown = next_result(driver, lambda: driver.find_element(By.ID, "file").send_keys(str(tmp_path / "digit.png")))
    assert shown == str(int(test.y[i]))
    assert driver.find_element(By.ID, "preview").get_attribute("naturalWidth") == "28"
    screenshot(driver, screenshots / "serve-upload.png")


# Digits as a hand draws them: strokes through points, in pixels from the canvas' centre (y grows downwards).
DRAWINGS = {
    "1": [[(4, -90), (-14, 90)]],
    "7": [[(-70, -80), (70, -80), (10, 90)]],
    "0": [[(round(60 * math.sin(i * math.pi / 6)), round(-85 * math.cos(i * math.pi / 6))) for i in range(13)]],
}


def draw(driver, canvas, strokes):
    """Press, drag through the points in 4 moves per segment (pointer events, as a mouse makes), release."""
    from selenium.webdriver.common.action_chains import ActionChains
    for points in strokes:
        # 20 ms a move: Selenium's default of 250 ms would make a 0 take half a minute
        hand = ActionChains(driver, duration=20).move_to_element_with_offset(canvas, *points[0]).click_and_hold()
        for (x0, y0), (x1, y1) in zip(points, points[1:]):
            for step in range(1, 5):
                hand.move_to_element_with_offset(canvas, round(x0 + (x1 - x0) * step / 4),
                                                 round(y0 + (y1 - y0) * step / 4))
        hand.release().perform()


@pytest.mark.parametrize("digit", DRAWINGS)
def test_a_drawn_digit_is_read_as_that_digit(page, screenshots, digit):
    from selenium.webdriver.common.by import By
    driver, _, _ = page
    canvas = driver.find_element(By.ID, "canvas")
    assert canvas.is_displayed()  # /model says one channel, so the page offers the canvas
    driver.find_element(By.ID, "clear").click()
    draw(driver, canvas, DRAWINGS[digit])
    shown = next_result(driver, lambda: driver.find_element(By.ID, "classify-drawing").click())
    assert driver.find_element(By.ID, "result").get_attribute("data-source") == "drawing"
    path = screenshot(driver, screenshots / f"serve-drawing-{digit}.png")
    assert shown == digit, f"drew a {digit}, the page shows {shown}; see {path}"
