"""Rate-limit buckets live beside a namespace's features, never among them."""

from __future__ import annotations

from fnmatch import fnmatchcase

from shared.store.redis_keys import NamespaceKeys, rate_limit_bucket


def test_a_bucket_is_not_one_of_the_namespaces_keys_that_a_rebuild_rewrites() -> None:
    key = rate_limit_bucket("live", "3f9c0a1b2c4d")

    assert key == "bw-ratelimit:live:3f9c0a1b2c4d"
    assert not fnmatchcase(key, NamespaceKeys("live").pattern())
