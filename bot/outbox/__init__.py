"""Durable sending: the outbox sender, late replies and the SQLite sender lock."""
