"""Ingestion: consumes shopper events from Kafka and applies them to the feature store exactly once.

Invalid events go to the dead-letter topic with their reason; transient failures of PostgreSQL or
Redis pause and retry the same batch without committing offsets, so nothing is lost or doubled.
"""
