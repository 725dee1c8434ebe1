"""Signed webhooks: events written to an outbox with the state change, delivered until accepted."""
