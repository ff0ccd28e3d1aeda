"""Repositories: the only code that builds querysets."""
