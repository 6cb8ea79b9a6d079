"""The policy service: learns per-bundle click rates from Kafka and publishes versioned snapshots."""
