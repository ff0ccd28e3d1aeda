"""The scheduling lease in Redis, and two leaders at once still firing each time once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
import redis.asyncio as aioredis

from bot.config import Settings
from bot.context import Services
from sop import runs
from sop.jobs import DailyJob
from sop.leader import LocalLeadership, RedisLeadership
from sop.schedule import SopScheduler
from storage.keys import Key, KeyBuilder
from storage.models import SopRun, Touchpoint
from tests.conftest import TEST_REDIS
from tests.sched_support import RecordingFirer, cron_rule
from tests.test_sop_schedule import DAY1, SH, Clock, services_at


@pytest.fixture
async def redis() -> AsyncIterator[aioredis.Redis]:
    """A raw client on the test Redis, to expire the lease by hand."""
    client = aioredis.Redis.from_url(TEST_REDIS, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
def lease(keys: KeyBuilder) -> Key:
    """This test's lease key."""
    return keys.sop_leader(30)


async def test_local_leadership_leads_until_released() -> None:
    leader = LocalLeadership()
    assert not leader.is_leader
    assert await leader.acquire()
    assert await leader.renew()
    await leader.release()
    assert not leader.is_leader
    assert not await leader.renew()


@pytest.mark.redis
async def test_one_of_two_holds_and_the_other_takes_over(redis: aioredis.Redis, lease: Key) -> None:
    first, second = RedisLeadership(redis, lease), RedisLeadership(redis, lease)
    assert await first.acquire()
    assert not await second.acquire()
    assert await first.acquire()  # holding it: extended, still ours
    assert await first.renew()
    assert (first.is_leader, second.is_leader) == (True, False)
    assert await redis.get(lease.name) == first.owner
    assert 0 < await redis.pttl(lease.name) <= 30_000

    await redis.delete(lease.name)  # the lease expired (the leader stopped renewing)
    assert await second.acquire()
    assert not await first.renew()  # lost: it must stop firing
    assert not first.is_leader
    await first.release()  # never removes the successor's lease
    assert await redis.get(lease.name) == second.owner
    await second.release()
    assert await redis.get(lease.name) is None


@pytest.mark.redis
async def test_a_follower_scheduler_takes_over_and_resumes_the_killed_run(
    settings: Settings, redis: aioredis.Redis, lease: Key
) -> None:
    clock = Clock(DAY1)
    firer = RecordingFirer(clock.clock, cron_rule("morning", "0 9 * * *"))
    firer.hold = asyncio.Event()
    leader = _scheduler(firer, services_at(settings, clock.clock), redis, lease)
    follower = _scheduler(firer, services_at(settings, clock.clock), redis, lease)
    assert await leader.keep_lease()
    assert not await follower.keep_lease()
    assert not (await follower.tick(clock.clock.now())).leader

    killed = asyncio.create_task(leader.tick(clock.clock.now()))
    await firer.claimed.wait()
    killed.cancel()  # the leader dies mid-run; its lease runs out
    with pytest.raises(asyncio.CancelledError):
        await killed
    firer.hold = None
    await redis.delete(lease.name)

    assert await follower.keep_lease()
    # Too young to tell from a live leader whose lease lapsed: left for a later tick.
    assert (await follower.tick(clock.move(timedelta(seconds=5)))).resumed == []
    # A lease later (the leader's lease ran out: it stopped renewing) it is an orphan.
    report = await follower.tick(clock.move(timedelta(seconds=30)))
    (run,) = await SopRun.all()
    assert report.resumed == [run.id]
    assert (run.status, run.runner) == ("done", follower.runner)
    assert len(firer.fired) == 1
    assert firer.resumed == [(run.id, follower.runner)]
    assert firer.claims == 1
    assert await Touchpoint.all().count() == 1
    assert not await leader.keep_lease()  # the old leader, were it alive, stays a follower


@pytest.mark.postgres
@pytest.mark.redis
async def test_two_leaders_on_one_tick_fire_once(
    settings: Settings, redis: aioredis.Redis, lease: Key
) -> None:
    clock = Clock(DAY1)
    firer = RecordingFirer(clock.clock, cron_rule("morning", "0 9 * * *"))
    probes: list[datetime] = []

    async def probe(services: Services, fire_time: datetime, now: datetime) -> dict[str, int]:
        probes.append(fire_time)
        await asyncio.sleep(0)  # let the other leader run meanwhile
        return {"probed": 1}

    jobs = [DailyJob("probe", "0 8 * * *", probe)]
    one = _scheduler(firer, services_at(settings, clock.clock), redis, lease, jobs)
    two = _scheduler(firer, services_at(settings, clock.clock), redis, lease, jobs)
    assert await one.keep_lease()
    await redis.delete(lease.name)  # a lease lapse: both believe they lead for a moment
    assert await two.keep_lease()

    reports = await asyncio.gather(*(s.tick(clock.clock.now()) for s in (one, two)))
    fired = [f for r in reports for f in r.fired]
    assert sorted(s for s, _ in fired) == ["job:probe", "morning"]
    assert await SopRun.all().count() == 2
    assert len(firer.fired) == 1
    assert firer.claims == 1
    assert probes == [datetime(2027, 3, 1, 8, tzinfo=SH)]
    done = await runs.get("job:probe", probes[0])
    assert done is not None
    assert done.counts == {"probed": 1}


def _scheduler(
    firer: RecordingFirer,
    services: Services,
    redis: aioredis.Redis,
    lease: Key,
    jobs: list[DailyJob] | None = None,
) -> SopScheduler:
    return SopScheduler(firer, services, RedisLeadership(redis, lease), jobs or [])


@pytest.mark.redis
async def test_a_started_follower_takes_over_when_the_lease_lapses(
    settings: Settings, redis: aioredis.Redis, lease: Key
) -> None:
    clock = Clock(DAY1)
    firer = RecordingFirer(clock.clock, cron_rule("morning", "0 9 * * *"))
    other = RedisLeadership(redis, lease)
    assert await other.acquire()  # another process leads
    follower = _scheduler(firer, services_at(settings, clock.clock), redis, lease)
    await follower.start()
    try:
        await follower.settled()
        assert firer.fired == []
        assert set(follower.wake_ups()) == {"wake:morning", "lease", "tick"}
        assert not await follower.keep_lease()

        await redis.delete(lease.name)  # the leader died; its lease ran out
        assert await follower.keep_lease()  # the follower's lease job, on its next attempt
        await follower.settled()  # the takeover's catch-up tick
        assert [(s, r) for s, _, r in firer.fired] == [("morning", follower.runner)]
    finally:
        await follower.stop()
    assert await redis.get(lease.name) is None
    assert follower.wake_ups() == {}
