"""The ops dashboard: lag, throughput, heartbeats, dead letters, models and generated content."""
