"""The storage layout of Bundlewise and the one place that writes it.

- :mod:`shared.store.tables`: PostgreSQL tables (the durable source of truth);
- :mod:`shared.store.redis_keys`: the Redis key layout (online features);
- :mod:`shared.store.feature_updates`: how an event changes PostgreSQL and Redis, exactly once;
- :mod:`shared.store.catalog`: catalog writes (items, bundles) and their Redis mirror;
- :mod:`shared.store.migrate`: schema changes, through Alembic.
Every writer (ingestion, catalog loader, rebuild, policy) goes through these modules.
"""
