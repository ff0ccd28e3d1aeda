"""Persistence: models, repositories, cache, keys and migrations."""
