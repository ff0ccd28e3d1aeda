"""Async WeChat and WeCom API clients on one aiohttp session, with shared tokens."""
