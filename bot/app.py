"""``create_app(settings, overrides)``: the one wiring place."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from tortoise import connections

from bot.admin import setup_admin
from bot.appkeys import INTAKE, METRICS, RECORDER, SENDER, SERVICES
from bot.background import Background
from bot.clients.caller import PauseBook, Sleep
from bot.clients.registry import Clients
from bot.clients.tokens import make_token_store
from bot.clock import BusinessClock, WallClock
from bot.config import Settings
from bot.config_sop import EVENTS
from bot.context import LateReplyHook, MemberResolver, Services
from bot.metrics import Metrics
from bot.metrics_points import refresh_points_breaks
from bot.middlewares import default_middlewares
from bot.outbox.late import OutboxLateReplies
from bot.outbox.lock import SenderLock
from bot.outbox.sender import Sender
from bot.routing import Dispatcher, Router
from bot.services.activity import ActivityRecorder
from bot.services.binding import BindingService
from bot.services.broadcast_progress import ChatProgress
from bot.services.broadcasts import BroadcastService
from bot.services.events import EventHub
from bot.services.mall import MallService
from bot.services.members import MemberService
from bot.services.merge import merge_members
from bot.services.notify import Notifier
from bot.services.orders import OrderService
from bot.services.phone import Merger, PhoneService
from bot.services.pii import MobileVault
from bot.services.referrals import ReferralService
from bot.services.signin import SignInService
from bot.services.sms import SmsSender, make_sms_sender
from bot.services.tiers import TierService
from bot.services.wecom_customers import check_welcome_templates
from bot.templating import Renderer
from bot.wechat.budget import ReplyBudget, TimeoutBudget
from bot.wechat.intake import Deduper, Intake
from bot.wechat.views import oa_callback, wecom_callback
from sop.api import SopFirer
from sop.validate import validate_rules
from sop.wiring import scheduler_ctx
from storage import db
from storage.cache import Cache, make_cache
from storage.keys import KeyBuilder
from storage.repos import inbound as inbound_repo

log = logging.getLogger("bot.app")


@dataclass(frozen=True)
class Overrides:
    """Replaceable collaborators, for tests and tools (never ``mock.patch``)."""

    wall: WallClock | None = None
    clock: BusinessClock | None = None
    cache: Cache | None = None
    keys: KeyBuilder | None = None
    budget: ReplyBudget | None = None
    late_hook: LateReplyHook | None = None
    resolve_member: MemberResolver | None = None
    routers: Sequence[Router] | None = None
    manage_db: bool = True
    run_sender: bool | None = None
    api_sleep: Sleep | None = None
    sms: SmsSender | None = None
    # The merge engine binding a phone uses; production wires none yet (a MergeRequest
    # then keeps the case for staff).
    merger: Merger | None = None
    # The SOP engine the scheduler fires (None: sop.engine.SopEngine on these services).
    sop_firer: SopFirer | None = None
    run_scheduler: bool | None = None  # None: [sop] scheduler


def create_app(settings: Settings, overrides: Overrides | None = None) -> web.Application:
    """Build the aiohttp application for the given settings."""
    ov = overrides or Overrides()
    app = web.Application(middlewares=[_never_500])
    services = build_services(settings, ov)
    app[SERVICES] = services
    app[METRICS] = Metrics()
    app[RECORDER] = inbound_repo.InboundRecorder()
    app[SENDER] = Sender.for_services(services)
    services.notify.wake = app[SENDER].wake
    services.broadcasts.wake = app[SENDER].wake
    app[INTAKE] = _intake(app, ov)
    if ov.manage_db:
        app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_rewards)
    app.cleanup_ctx.append(_staff_roster)
    app.cleanup_ctx.append(_cache_and_recorder)
    app.cleanup_ctx.append(_clients)
    app.cleanup_ctx.append(_background)
    run_sender = settings.worker.embedded if ov.run_sender is None else ov.run_sender
    if run_sender:
        app.cleanup_ctx.append(_embedded_sender)
    app.cleanup_ctx.append(_purge_loop)
    firer = ov.sop_firer or _sop_engine(services)  # event touches are written either way
    if settings.sop.scheduler if ov.run_scheduler is None else ov.run_scheduler:
        app.cleanup_ctx.append(scheduler_ctx(SERVICES, firer))
    _routes(app, settings)
    return app


def build_services(settings: Settings, ov: Overrides | None = None) -> Services:
    """The long-lived collaborators (also used by CLI commands and the worker)."""
    ov = ov or Overrides()
    check_welcome_templates(settings)
    wall = ov.wall or WallClock()
    clock = ov.clock or BusinessClock(settings.tz, allow_offset=settings.dev.time_travel)
    cache = ov.cache or make_cache(
        settings.redis.url, settings.redis.timeout_seconds, settings.redis.connect_timeout_seconds
    )
    keys = ov.keys or KeyBuilder(dedupe_ttl=settings.server.dedupe_ttl_seconds)
    clients = Clients(
        settings,
        make_token_store(cache, keys),
        PauseBook(cache, keys, clock),
        now=wall.time,
        sleep=ov.api_sleep or asyncio.sleep,
    )
    members = MemberService(settings, cache, keys, clock, ActivityRecorder())
    background = Background()
    renderer = Renderer()
    validate_rules(settings, renderer)
    notify = Notifier(settings, clock, renderer, members.activity)
    events = EventHub()
    tiers = TierService(settings, clock, notify, events)
    broadcasts = BroadcastService(settings, clock, renderer)
    broadcasts.watchers.append(ChatProgress(broadcasts))  # progress of 群发 from WeCom
    return Services(
        settings=settings,
        clock=clock,
        wall=wall,
        cache=cache,
        keys=keys,
        renderer=renderer,
        clients=clients,
        members=members,
        background=background,
        binding=BindingService(settings, cache, keys, clock, clients, background),
        referrals=ReferralService(settings, cache, keys, clock, wall, clients, notify),
        notify=notify,
        tiers=tiers,
        signin=SignInService(settings, tiers),
        mall=MallService(settings, clock),
        orders=OrderService(settings, clock, tiers, MobileVault.from_settings(settings.security)),
        phone=PhoneService(
            settings,
            renderer,
            background,
            ov.sms or make_sms_sender(settings),
            ov.merger or merge_members,
        ),
        events=events,
        broadcasts=broadcasts,
        resolve_member=ov.resolve_member or members.resolve,
    )


def _sop_engine(services: Services) -> SopFirer:
    """The SOP engine, subscribed to the events its event-triggered SOPs wait for."""
    from sop.engine import SopEngine

    engine = SopEngine(services)
    for event in EVENTS:
        services.events.subscribe(event, engine.dispatcher.on_event)
    return engine


def _intake(app: web.Application, ov: Overrides) -> Intake:
    from handlers import ROUTERS  # handlers import bot modules; keep the edge one-way

    services = app[SERVICES]
    return Intake(
        services=services,
        dispatcher=Dispatcher(ov.routers or ROUTERS, default_middlewares()),
        deduper=Deduper(services.cache, services.keys),
        recorder=app[RECORDER],
        budget=ov.budget or TimeoutBudget(services.settings.server.reply_budget_seconds),
        late_hook=ov.late_hook
        or OutboxLateReplies(
            services.clock, app[SENDER].wake, services.settings, services.members.activity
        ),
        metrics=app[METRICS],
    )


def _routes(app: web.Application, settings: Settings) -> None:
    app.router.add_route("GET", "/wechat/{account}", oa_callback)
    app.router.add_route("POST", "/wechat/{account}", oa_callback)
    app.router.add_route("GET", "/wecom/{corp}", wecom_callback)
    app.router.add_route("POST", "/wecom/{corp}", wecom_callback)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    setup_admin(app)
    if settings.dev.time_travel:
        from bot.devtools.time_travel import setup_time_travel

        setup_time_travel(app)
    if settings.dev.fake_platform:
        from bot.devtools.fake import FakePlatform, mount_fake_platform

        mount_fake_platform(app, FakePlatform.from_settings(settings))


@web.middleware
async def _never_500(
    request: web.Request, handler: Callable[[web.Request], Any]
) -> web.StreamResponse:
    """WeChat must never see a 500: log the error and answer ``success``."""
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except web.HTTPException:
        raise
    except Exception:
        log.exception("unhandled error", extra={"path": request.path})
        if request.path.startswith(("/wechat/", "/wecom/")):
            return web.Response(text="success")
        return web.json_response({"error": "internal", "message": "internal error"}, status=500)


async def _database(app: web.Application) -> AsyncIterator[None]:
    url = app[SERVICES].settings.database.url
    await db.open_db(url)
    yield
    await db.close_db()


async def _rewards(app: web.Application) -> AsyncIterator[None]:
    # [[rewards]] upserted by code once the database is open (stock only on creation).
    services = app[SERVICES]
    await services.mall.sync_config(services.clock.now())
    yield


async def _staff_roster(app: web.Application) -> AsyncIterator[None]:
    # [[wecom.staff]] upserted into Staff once the database is open; others go inactive.
    from bot.services.staff import seed_staff

    wecom = app[SERVICES].settings.wecom
    if wecom is not None:
        await seed_staff(wecom.staff)
    yield


async def _cache_and_recorder(app: web.Application) -> AsyncIterator[None]:
    services = app[SERVICES]
    if not services.cache.shared:
        await _reseed_dedupe(app)
    recorder = app[RECORDER]
    await recorder.start()
    await services.members.activity.start()
    yield
    await app[INTAKE].close()
    await services.members.activity.stop()
    await recorder.stop()
    await services.cache.close()


async def _clients(app: web.Application) -> AsyncIterator[None]:
    clients = app[SERVICES].clients
    await clients.start()
    yield
    await clients.close()


async def _background(app: web.Application) -> AsyncIterator[None]:
    # Closed before the API clients and the database it uses; late handlers go first,
    # since they may still start background work.
    yield
    await app[INTAKE].drain()
    await app[SERVICES].background.close()
    await app[SERVICES].phone.sms.close()


async def _embedded_sender(app: web.Application) -> AsyncIterator[None]:
    lock = SenderLock(app[SERVICES].settings.database.url)
    if not lock.acquire():
        log.warning("another sender (python -m bot worker) owns this database; not sending here")
        yield
        return
    task = asyncio.create_task(app[SENDER].run(), name="outbox-sender")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    lock.release()


async def _reseed_dedupe(app: web.Application) -> None:
    # An in-process dedupe forgets everything on restart; WeChat may still retry what
    # the previous process handled, so remember the keys recorded within the TTL.
    services = app[SERVICES]
    since = datetime.fromtimestamp(services.wall.time(), UTC) - timedelta(
        seconds=services.keys.dedupe_ttl
    )
    for key in await inbound_repo.recent_keys(since):
        await app[INTAKE].deduper.remember(key)


async def _purge_loop(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(_purge_forever(app), name="inbound-purge")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _purge_forever(app: web.Application, every: float = 3600.0) -> None:
    services = app[SERVICES]
    while True:
        try:
            now = datetime.fromtimestamp(services.wall.time(), UTC)
            cutoff = inbound_repo.retention_cutoff(
                now, services.settings.business.inbound_retention_days
            )
            purged = await inbound_repo.purge_before(cutoff)
            if purged:
                log.info("purged inbound events", extra={"count": purged})
        except Exception:
            log.exception("inbound purge failed")
        await asyncio.sleep(every)


async def healthz(request: web.Request) -> web.Response:
    """200 when the database and the cache answer, else 503."""
    services = request.app[SERVICES]
    checks = {"db": await _db_ok(), "cache": await services.cache.ping()}
    body = {k: "ok" if v else "down" for k, v in checks.items()}
    body["status"] = "ok" if all(checks.values()) else "degraded"
    return web.json_response(body, status=200 if all(checks.values()) else 503)


async def _db_ok() -> bool:
    try:
        await connections.get("default").execute_query("SELECT 1")
    except Exception:
        return False
    return True


async def metrics(request: web.Request) -> web.Response:
    """Prometheus exposition."""
    m = request.app[METRICS]
    await refresh_points_breaks(m, request.app[SERVICES].wall.time())
    return web.Response(body=m.render(), headers={"Content-Type": m.content_type})
