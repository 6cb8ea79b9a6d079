"""``make demo``: runs the whole system on the real data and shows what it does.

1. starts every service as a background process (pidfiles in BUNDLEWISE_STATE_DIR/run/services);
2. loads the real catalogs (amazon, steam, youshu) and replays their history through Kafka;
3. waits until ingestion has applied the Amazon history, trains MF-BPR on Youshu for a few epochs and
   publishes it (the ranker swaps it in), then asks the gateway for bundles for a few real shoppers,
   a cold shopper, a cart, a price-capped Steam shopper and a Youshu reader, and prints them;
4. embeds a few products the catalog has never seen through the embedding service's EmbedItems
   (text alone, so a new item has a vector at once) and prints how close they are;
5. leaves everything running: the gateway on http://localhost:8000 (OpenAPI at /docs, the
   storefront page at /storefront/).
``make down`` stops it all.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from bundlewise.embedding.v1 import embedding_pb2, embedding_pb2_grpc
from sqlalchemy import func, select

from scripts.local_stack import REPO_ROOT, LocalStack, local_pepper
from services.featurestore.real_catalogs import load_amazon
from shared.datasets import default_data_dir
from shared.store import tables
from shared.store.api_keys import PEPPER_VARIABLE
from shared.store.migrate import make_engine, upgrade_to_head
from shared.store.model_registry import latest_versions

STATE_DIR = Path(os.environ.get("BUNDLEWISE_STATE_DIR", "/var/tmp/bundlewise"))
PID_DIR = STATE_DIR / "run" / "services"
SHOWCASE = [
    ("amazon", "electronic-u1", {}, "an electronics shopper"),
    ("amazon", "clothing-u1", {}, "a clothing shopper with little co-purchase data"),
    ("amazon", "new-shopper-42", {}, "a shopper we have never seen (cold start)"),
    (
        "amazon",
        "new-shopper-43",
        {"anchor_item_id": "electronic-126"},
        "a cart holding a camera battery charger",
    ),
    ("steam", "gamer-1", {"max_total_price": "20"}, "a Steam shopper with a $20 budget"),
    ("youshu", "u11", {}, "a Youshu reader (benchmark catalog)"),
]


def get_json(url: str, headers: dict[str, str]) -> Any:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as reply:
        return json.load(reply)


def stop_previous() -> None:
    subprocess.run(["bash", str(REPO_ROOT / "scripts" / "stop_services.sh")], check=False)


def wait_for_events(catalog_id: str, expected: int, timeout_s: float) -> int:
    engine = make_engine(os.environ["BUNDLEWISE_POSTGRES_URL"], os.environ.get("BUNDLEWISE_NAMESPACE", "live"))
    deadline = time.monotonic() + timeout_s
    count = 0
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            count = conn.execute(
                select(func.count()).select_from(tables.events).where(tables.events.c.catalog_id == catalog_id)
            ).scalar_one()
        if count >= expected:
            break
        time.sleep(0.5)
    engine.dispose()
    return int(count)


def show(stack: LocalStack, catalog_id: str, user_id: str, params: dict[str, str], who: str) -> None:
    query = urllib.parse.urlencode({"catalog_id": catalog_id, "k": 3, **params})
    answer = get_json(f"{stack.gateway_url}/v1/users/{user_id}/bundles?{query}", stack.auth_headers())
    print(f"\n== {who}: {catalog_id} / {user_id}" + (f"  {params}" if params else ""))
    print(f"   model {answer['model_version']}, policy v{answer['policy_version']}, cold start: {answer['cold_start']}")
    for rank, bundle in enumerate(answer["bundles"], 1):
        price = f"  ${bundle['total_price']:.2f}" if bundle.get("total_price") is not None else ""
        print(f"   {rank}. {bundle['name'][:60]!r}{price}  score {bundle['score']:.3g}  — {bundle['explanation']}")
        for item in bundle["items"][:4]:
            print(f"        - {item['title'][:90] or item['item_id']}")
        if len(bundle["items"]) > 4:
            print(f"        … and {len(bundle['items']) - 4} more")


NEW_PRODUCTS = [
    ("2-person dome tent, waterproof", "Sports & Outdoors > Camping & Hiking > Tents"),
    ("Portable camping stove with piezo ignition", "Sports & Outdoors > Camping & Hiking > Camp Kitchen"),
    ("双人帐篷 防水 户外露营", "运动户外 > 露营 > 帐篷"),
    ("Women's floral summer maxi dress", "Clothing > Women > Dresses"),
]


def show_new_products(stack: LocalStack) -> None:
    """EmbedItems on products no catalog holds: each gets its fused item vector from its text alone."""
    with grpc.insecure_channel(stack.address("embedding")) as channel:
        answer = embedding_pb2_grpc.EmbeddingStub(channel).EmbedItems(
            embedding_pb2.EmbedItemsRequest(
                items=[
                    embedding_pb2.ItemInput(item_id=f"new-{index}", title=title, category_paths=[path])
                    for index, (title, path) in enumerate(NEW_PRODUCTS)
                ]
            ),
            timeout=60,
        )
    vectors = np.array([list(item.vector.values) for item in answer.items])
    print(f"\n== new products, embedded at once: {answer.model_version} (text: {answer.text_model_version})")
    tent = vectors[0]
    for (title, _), vector, item in zip(NEW_PRODUCTS[1:], vectors[1:], answer.items[1:], strict=True):
        print(f"   cosine to the tent {float(tent @ vector):.2f}  {title!r} (from {', '.join(item.modalities)})")


def publish_youshu_model(stack: LocalStack) -> None:
    """Trains MF-BPR on Youshu's training split (a few epochs: the demo shows serving, not quality),
    publishes it, and waits until the ranker serves it (docs/bundle-quality.md has the real figures)."""
    print("\ntraining MF-BPR on Youshu and publishing it (about 20 s) ...", flush=True)
    subprocess.run(
        [sys.executable, "-m", "services.ranker.offline.train_youshu", "--model", "mf_bpr", "--epochs", "5",
         "--lr", "0.005", "--publish", "--run-dir", str(STATE_DIR / "runs" / "demo-mf")],
        check=True,
        cwd=REPO_ROOT,
        env={**os.environ, "BUNDLEWISE_MODEL_DIR": str(STATE_DIR / "models")},
    )  # fmt: skip
    engine = make_engine(os.environ["BUNDLEWISE_POSTGRES_URL"], os.environ.get("BUNDLEWISE_NAMESPACE", "live"))
    try:
        published = latest_versions(engine)["youshu"].label
    finally:
        engine.dispose()
    deadline = time.monotonic() + 60
    url = f"{stack.gateway_url}/v1/users/u11/bundles?catalog_id=youshu&k=1"
    while time.monotonic() < deadline:
        if get_json(url, stack.auth_headers())["model_version"] == published:
            return
        time.sleep(1)
    print("the ranker did not pick the model up within 60 s; see its log", flush=True)


def main() -> int:
    started = time.monotonic()
    stop_previous()
    upgrade_to_head(os.environ["BUNDLEWISE_POSTGRES_URL"], os.environ.get("BUNDLEWISE_NAMESPACE", "live"))
    # bin/bundlewise api-key reads the same pepper, so keys it creates work on the demo's gateway.
    os.environ.setdefault(PEPPER_VARIABLE, local_pepper(STATE_DIR))
    stack = LocalStack.with_default_ports(dict(os.environ), STATE_DIR / "logs" / "services")
    print("starting services (the embedding service loads its BERT model first) ...", flush=True)
    stack.start()
    PID_DIR.mkdir(parents=True, exist_ok=True)
    for name, service in stack.processes.items():
        (PID_DIR / f"{name}.pid").write_text(str(service.process.pid))
    print(f"services up after {time.monotonic() - started:.0f}s; logs in {stack.log_dir}", flush=True)

    subprocess.run([sys.executable, "-m", "services.featurestore.load_catalogs"], check=True, cwd=REPO_ROOT)
    amazon_events = len(load_amazon(default_data_dir()).events)
    applied = wait_for_events("amazon", amazon_events, timeout_s=300)
    print(f"ingestion applied {applied}/{amazon_events} Amazon events", flush=True)

    publish_youshu_model(stack)

    first_answer_s = None
    for catalog_id, user_id, params, who in SHOWCASE:
        show(stack, catalog_id, user_id, params, who)
        first_answer_s = first_answer_s or time.monotonic() - started
    show_new_products(stack)

    latencies = []
    for index in range(200):
        url = f"{stack.gateway_url}/v1/users/electronic-u{index % 800}/bundles?catalog_id=amazon&k=10"
        t0 = time.perf_counter()
        get_json(url, stack.auth_headers())
        latencies.append((time.perf_counter() - t0) * 1000)
    print(
        f"\nfirst recommendation {first_answer_s:.0f}s after `make demo` started; "
        f"GET /v1/users/{{id}}/bundles p50 {statistics.median(latencies):.1f} ms over {len(latencies)} requests"
    )
    print(f"\nThe gateway is running: {stack.gateway_url}/docs  (stop everything with `make down`)")
    storefront = urllib.parse.urlencode({"key": stack.api_key or "", "catalog": "amazon", "user": "electronic-u1"})
    print(f"The storefront page: {stack.gateway_url}/storefront/?{storefront}")
    print(
        f"Its API key (every scope, shown only now; more with `bin/bundlewise api-key create`):\n  {stack.api_key}\n"
        f"  curl -H 'Authorization: Bearer {stack.api_key}' "
        f"'{stack.gateway_url}/v1/users/electronic-u1/bundles?catalog_id=amazon&k=3'"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
