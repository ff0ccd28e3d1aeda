"""A fake WeChat (Official Account) and WeCom platform that enforces the rules it fakes.

Serves the official API shapes (``errcode``/``errmsg`` included) so the API clients run
unchanged against it: token expiry, customer-service windows, template and mass-send
rules, single-use WelcomeCodes, per-customer caps, and failures injected on request.
"""

from __future__ import annotations

from bot.devtools.fake.app import create_fake_app, mount_fake_platform
from bot.devtools.fake.common import ApiRequest, FakeError
from bot.devtools.fake.platform import FakePlatform

__all__ = ["ApiRequest", "FakeError", "FakePlatform", "create_fake_app", "mount_fake_platform"]
