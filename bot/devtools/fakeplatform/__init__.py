"""A fake WeChat/WeCom platform that enforces what it fakes (tests, demo, benchmarks)."""

from bot.devtools.fakeplatform.app import create_fake_app, mount_fake_platform
from bot.devtools.fakeplatform.platform import FakePlatform

__all__ = ["FakePlatform", "create_fake_app", "mount_fake_platform"]
