"""The storefront demo page in headless Chromium: it shows bundles of real Amazon items for a real
shopper, and opening one sends feedback that reaches Kafka as a bundle_click event."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from kafka import KafkaConsumer
from sqlalchemy import Engine

from scripts.local_stack import LocalStack
from tests.integration.browser import HeadlessChromium
from tests.integration.catalog_fixture import load_catalogs_into
from tests.integration.servers import KAFKA

SHOPPER = "electronic-u1"
# Set to a folder (docs/) to keep the page's screenshot there.
SCREENSHOT_DIR = os.environ.get("BUNDLEWISE_SCREENSHOT_DIR")

pytestmark = pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium missing: run make test-tools")


@pytest.fixture(scope="module")
def browser(stack: LocalStack, engine: Engine) -> Iterator[HeadlessChromium]:
    load_catalogs_into(stack, engine, "amazon")
    chromium = HeadlessChromium()
    try:
        yield chromium
    finally:
        chromium.close()


def clicks_on_kafka(topic: str, event_id: str) -> list[dict[str, object]]:
    consumer = KafkaConsumer(
        topic, bootstrap_servers=KAFKA, auto_offset_reset="earliest", consumer_timeout_ms=5_000, group_id=None
    )
    try:
        found = []
        for message in consumer:
            event = json.loads(message.value)
            if event.get("event_id") == event_id:
                found.append(event)
        return found
    finally:
        consumer.close()


def test_a_shopper_sees_real_bundles_and_opening_one_sends_a_click_to_kafka(
    browser: HeadlessChromium, stack: LocalStack, topics: dict[str, str], tmp_path: Path
) -> None:
    query = urlencode({"key": stack.api_key or "", "catalog": "amazon", "user": SHOPPER, "r": uuid.uuid4().hex})
    browser.open(f"{stack.gateway_url}/storefront/?{query}")

    shown = browser.wait_for("document.querySelectorAll('.bundle').length")
    titles = browser.evaluate("[...document.querySelectorAll('.bundle .items li')].map(li => li.textContent)")
    impression = browser.wait_for("document.getElementById('status').dataset.impressionId")
    first_bundle = browser.evaluate("document.querySelector('.bundle').dataset.bundleId")
    browser.click(".bundle button")
    event_id = browser.wait_for("document.getElementById('status').dataset.clickedEventId")
    browser.screenshot(tmp_path / "storefront.png")
    if SCREENSHOT_DIR:
        shutil.copy(tmp_path / "storefront.png", Path(SCREENSHOT_DIR) / "storefront.png")

    assert shown >= 1
    assert any(len(title) > 15 for title in titles), titles  # real product titles, not bare ids
    clicks = clicks_on_kafka(topics["events"], event_id)
    assert len(clicks) == 1, clicks
    click = clicks[0]
    assert click["type"] == "bundle_click"
    assert click["bundle_id"] == first_bundle
    assert click["impression_id"] == impression
    assert click["user_id"] == SHOPPER
