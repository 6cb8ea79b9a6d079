"""Feature store: batch reads of online features (Redis) for the ranker, plus the catalog loader and
the rebuild command. PostgreSQL is the source of truth; the layout lives in :mod:`shared.store`."""
