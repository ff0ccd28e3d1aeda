"""Every typed ``web.AppKey`` of the application, in one place."""

from __future__ import annotations

from aiohttp import web

from bot.context import Services
from bot.metrics import Metrics
from bot.outbox.sender import Sender
from bot.wechat.intake import Intake
from storage.repos.inbound import InboundRecorder

SERVICES = web.AppKey("services", Services)
INTAKE = web.AppKey("intake", Intake)
METRICS = web.AppKey("metrics", Metrics)
RECORDER = web.AppKey("recorder", InboundRecorder)
SENDER = web.AppKey("sender", Sender)
