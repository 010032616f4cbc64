"""/docs in a real headless browser (Debian's chromium through selenium): the page loads, lists
/predict, and its "Try it out" call returns the model's labels."""
import json
import os
import shutil

import pytest

from bert_in_a_flask.tools.loadtest import Server

pytestmark = pytest.mark.slow  # a gunicorn server and a browser

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium needs Python >= 3.8 (the TF 2.15 runtime)")
    if not (CHROMIUM and DRIVER):
        pytest.skip("no chromium / chromedriver here (apt-get install chromium chromium-driver; .ci/run does)")
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1600"):
        options.add_argument(argument)
    options.binary_location = CHROMIUM
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()


def test_the_docs_page_lists_predict_and_its_try_it_call_answers(trained, predictor, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import WebDriverWait
    server = Server(trained["export_dir"], str(tmp_path / "api.log"))
    try:
        assert server.wait_ready(), server.log()[-3000:]
        browser.get(server.url + "/docs")
        wait = WebDriverWait(browser, 60)
        operation = wait.until(seen.presence_of_element_located((By.ID, "operations-default-post_predict")))
        assert "/predict" in operation.text and "Classify texts" in operation.text
        operation.find_element(By.CSS_SELECTOR, ".opblock-summary").click()
        try_it = (By.CSS_SELECTOR, "#operations-default-post_predict .try-out__btn")
        wait.until(seen.element_to_be_clickable(try_it)).click()
        body = wait.until(seen.presence_of_element_located(
            (By.CSS_SELECTOR, "#operations-default-post_predict textarea.body-param__text")))
        body.clear()
        body.send_keys(json.dumps({"X": ["spring maven jvm", "react node npm"]}))
        browser.find_element(By.CSS_SELECTOR, "#operations-default-post_predict .execute").click()
        answer = wait.until(seen.presence_of_element_located(
            (By.CSS_SELECTOR, "#operations-default-post_predict .live-responses-table .response-col_description pre")))
        wait.until(lambda _: "predictions" in answer.text)
        got = json.loads(answer.text)
        browser.save_screenshot(os.path.join(str(tmp_path), "docs-page.png"))
    finally:
        server.stop()
    assert got["predictions"] == predictor.predict(["spring maven jvm", "react node npm"])["predictions"]
    assert set(got["probabilities"][0]) == set(predictor.labels)
