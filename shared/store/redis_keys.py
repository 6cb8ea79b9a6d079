"""The Redis key layout of the online feature store; nothing else spells a key.

Keys are ``bw:<namespace>:<catalog_id>:<kind>:<id>``. The namespace isolates replays from live
state; the catalog id lets several catalogs share one Redis.
"""

from __future__ import annotations

from dataclasses import dataclass

# Caps keep per-key memory bounded; changing one changes features, so rebuild after a change.
USER_RECENT_ITEMS_CAP = 50
SESSION_ITEMS_CAP = 50


@dataclass(frozen=True)
class NamespaceKeys:
    """Keys that belong to a namespace rather than to one catalog."""

    namespace: str

    @property
    def prefix(self) -> str:
        return f"bw:{self.namespace}"

    def watermark(self, topic: str, partition: int) -> str:
        """Highest Kafka offset of ``topic``/``partition`` whose effects are applied to Redis."""
        return f"{self.prefix}:wm:{topic}:{partition}"

    def catalog(self, catalog_id: str) -> CatalogKeys:
        return CatalogKeys(f"{self.prefix}:{catalog_id}")

    def pattern(self) -> str:
        """Matches every key of the namespace (for a rebuild or a namespace drop)."""
        return f"{self.prefix}:*"

    def catalogs(self) -> str:
        """Set: the ids of the catalogs mirrored in the namespace. Rankers find a newly synced catalog
        here: scanning the keyspace for version keys costs a pass over every key of the Redis."""
        return f"{self.prefix}:catalogs"


@dataclass(frozen=True)
class CatalogKeys:
    """Keys of one catalog in one namespace. ``prefix`` is also what the Lua scripts build keys from."""

    prefix: str

    # --- catalog mirror (written by the catalog writer, rebuilt from PostgreSQL) ---------------------
    def item(self, item_id: str) -> str:
        """Hash: title, category (path joined by ' > '), affinity_category, price, image_url, retired."""
        return f"{self.prefix}:item:{item_id}"

    def bundle(self, bundle_id: str) -> str:
        """Hash: name, items (JSON list), price, discounted_price, source, retired."""
        return f"{self.prefix}:bundle:{bundle_id}"

    def item_bundles(self, item_id: str) -> str:
        """Set of live catalog bundle ids that contain the item."""
        return f"{self.prefix}:item_bundles:{item_id}"

    def category_bundles(self, category: str) -> str:
        """Set of live bundle ids holding an item whose affinity category is ``category``."""
        return f"{self.prefix}:category_bundles:{category}"

    def live_bundles(self) -> str:
        """Set of every live (not retired) bundle id."""
        return f"{self.prefix}:live_bundles"

    def catalog_version(self) -> str:
        """String: a fresh random token after every write to the catalog mirror, so a reader holding a
        copy of the catalog knows, with one GET, whether its copy is current (see services.ranker)."""
        return f"{self.prefix}:catalog_version"

    # --- bundle vectors (written only by services.featurestore.backfill_vectors) ---------------------
    def bundle_vectors(self) -> str:
        """Hash bundle id -> its document's passage vector: base64 of little-endian float32, L2-normalised."""
        return f"{self.prefix}:bundle_vectors"

    def bundle_vector_digests(self) -> str:
        """Hash bundle id -> digest of the encoder version and document text its vector was made from."""
        return f"{self.prefix}:bundle_vector_digests"

    def bundle_vectors_meta(self) -> str:
        """Hash: model (encoder name), model_version, dim; every vector of the catalog is of this version."""
        return f"{self.prefix}:bundle_vectors_meta"

    # --- item vectors (written only by services.featurestore.backfill_vectors) -----------------------
    def item_vectors(self) -> str:
        """Hash item id -> its item vector from the embedding service's EmbedItems (the item fusion):
        base64 of little-endian float32, L2-normalised."""
        return f"{self.prefix}:item_vectors"

    def item_vector_digests(self) -> str:
        """Hash item id -> digest of the fusion version and item document its vector was made from."""
        return f"{self.prefix}:item_vector_digests"

    def item_vectors_meta(self) -> str:
        """Hash: model (the item fusion's name), model_version, dim; every item vector is of this version."""
        return f"{self.prefix}:item_vectors_meta"

    def catalog_items(self) -> str:
        """Set of every item id the catalog mirror holds a hash for (:meth:`item`), retired ones too
        (their hash says so): what a batch job that visits every item reads."""
        return f"{self.prefix}:catalog_items"

    def items_pattern(self) -> str:
        """Matches every item hash of the catalog (:meth:`item`): for mirrors written before
        :meth:`catalog_items` existed, which only a SCAN of the whole database can list."""
        return f"{self.prefix}:item:*"

    def privacy_erasures(self) -> str:
        """Hash user digest -> id of the erasure whose Redis step is done (see shared.store.privacy)."""
        return f"{self.prefix}:privacy_erasures"

    # --- features from events (written only by shared.store.feature_updates) -------------------------
    def user_recent_items(self, user_id: str) -> str:
        """Sorted set item -> latest event time (epoch s), capped at USER_RECENT_ITEMS_CAP."""
        return f"{self.prefix}:user_recent:{user_id}"

    def user_categories(self, user_id: str) -> str:
        """Sorted set affinity category -> accumulated interaction weight."""
        return f"{self.prefix}:user_cats:{user_id}"

    def user_bundles(self, user_id: str) -> str:
        """Set of bundle ids the user bought."""
        return f"{self.prefix}:user_bundles:{user_id}"

    def user_bundle_looks(self, user_id: str) -> str:
        """Hash bundle id -> the user's looks at it (a float, as HINCRBYFLOAT writes it): every
        impression that showed them the bundle at position ``p`` added
        ``shared.bandit_features.examination_prior(p)``, in Kafka order."""
        return f"{self.prefix}:user_bundle_looks:{user_id}"

    def user_bundle_clicks(self, user_id: str) -> str:
        """Set of bundle ids the user clicked (bundle_click events)."""
        return f"{self.prefix}:user_bundle_clicks:{user_id}"

    def session_items(self, session_id: str) -> str:
        """Sorted set item -> event time of the carted/bought items of a session (the basket)."""
        return f"{self.prefix}:session:{session_id}"

    def item_neighbours(self, item_id: str) -> str:
        """Sorted set item -> number of baskets shared with ``item_id``."""
        return f"{self.prefix}:cooc:{item_id}"

    def item_popularity(self) -> str:
        """Sorted set item -> weighted interaction count, all time."""
        return f"{self.prefix}:item_pop"

    def item_popularity_day(self, day: str) -> str:
        """Sorted set item -> weighted interaction count on ``day`` (YYYYMMDD, event time, UTC)."""
        return f"{self.prefix}:item_pop_day:{day}"

    def bundle_stats(self, bundle_id: str) -> str:
        """Hash: impressions, clicks, purchases."""
        return f"{self.prefix}:bundle_stats:{bundle_id}"

    def bundle_popularity(self) -> str:
        """Sorted set bundle -> purchases."""
        return f"{self.prefix}:bundle_pop"


def rate_limit_bucket(namespace: str, key_id: str) -> str:
    """Hash of one API key's token bucket (the gateway's rate limit): ``bw-ratelimit:<namespace>:<key_id>``.

    Outside the namespace's ``bw:<namespace>:`` keys on purpose: a bucket is request accounting, not
    a feature, so a rebuild neither drops nor compares it.
    """
    return f"bw-ratelimit:{namespace}:{key_id}"


# Keys no rebuild can remake: the backfill's encoder outputs (bundle and item vectors), not derived
# from PostgreSQL.
_BACKFILLED = (
    ":bundle_vectors",
    ":bundle_vector_digests",
    ":bundle_vectors_meta",
    ":item_vectors",
    ":item_vector_digests",
    ":item_vectors_meta",
)


def made_by_backfill(key: str | bytes) -> bool:
    """Whether ``key`` holds encoder outputs written by a backfill (kept by a rebuild of Redis)."""
    text = key.decode() if isinstance(key, bytes) else key
    return text.endswith(_BACKFILLED)
