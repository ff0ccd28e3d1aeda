"""A touch's grants (points, a coupon, a local tag), credited once per touchpoint.

One transaction turns the touchpoint's ``granted`` false → true and credits everything;
a second attempt (a retry, a second dispatcher) finds ``granted`` true and credits
nothing. The coupon's code is noted on the touchpoint (``outcome``) in that transaction,
so a retried message still names it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from bot.config import Settings
from bot.config_commerce import RewardConfig
from bot.config_sop import SopRule
from bot.services import points
from storage.models import Coupon, MemberTag, PointsEntry, Reward, Tag, TagGroup, Touchpoint
from storage.repos import coupons
from storage.repos import touchpoints as repo

COUPON_NOTE = "granted coupon "
LOCAL_GROUP = "SOP"


@dataclass(frozen=True, slots=True)
class Granted:
    """What a touch credited (now, or in an earlier attempt)."""

    points: int = 0
    coupon: Coupon | None = None
    tag: str = ""


def points_key(touchpoint_id: int) -> str:
    """The ledger idempotency key of a touch's points."""
    return f"sop:{touchpoint_id}"


async def grant_once(
    settings: Settings, rule: SopRule, touch: Touchpoint, now: datetime
) -> Granted:
    """Credit the rule's action to the member once; what was credited either way."""
    action = rule.action
    if not (action.points or action.coupon or action.tag):
        return Granted()
    async with in_transaction():
        if not await repo.mark_granted(int(touch.id)):
            return await _granted_before(rule, touch)
        coupon: Coupon | None = None
        if action.points:
            await points.earn(
                touch.member_id,
                action.points,
                points_key(int(touch.id)),
                now=now,
                expires_at=points.lot_expiry(now, settings.tz),
                reason=rule.id,
                source="sop",
                ref=f"touchpoint:{touch.id}",
            )
        if action.coupon:
            coupon = await _issue_coupon(settings, action.coupon, touch.member_id, now)
            await Touchpoint.filter(id=touch.id).update(outcome=COUPON_NOTE + coupon.code)
        if action.tag:
            await _tag(touch.member_id, action.tag, rule.id, now)
    return Granted(action.points, coupon, action.tag)


async def _granted_before(rule: SopRule, touch: Touchpoint) -> Granted:
    entry = await PointsEntry.get_or_none(idempotency_key=points_key(int(touch.id)))
    fresh = await Touchpoint.get(id=touch.id)
    coupon = None
    if fresh.outcome.startswith(COUPON_NOTE):
        code = fresh.outcome[len(COUPON_NOTE) :].split(" | ")[0]
        coupon = await Coupon.get_or_none(code=code)
    return Granted(int(entry.amount) if entry else 0, coupon, rule.action.tag)


def reward_config(settings: Settings, code: str) -> RewardConfig:
    """The ``[[rewards]]`` entry of a coupon code (LookupError when none)."""
    found = next((r for r in settings.rewards if r.code.lower() == code.lower()), None)
    if found is None:
        raise LookupError(f"no [[rewards]] with code {code!r}")
    return found


async def _issue_coupon(settings: Settings, code: str, member_id: int, now: datetime) -> Coupon:
    """The reward's coupon, issued without spending points or stock (source ``sop``)."""
    reward = reward_config(settings, code)
    row = await Reward.get_or_none(code=reward.code)
    return await coupons.issue(
        member_id=member_id,
        name=reward.name,
        value_fen=reward.coupon_value_fen,
        discount=reward.discount_per_mille,
        valid_from=now,
        valid_to=now + timedelta(days=reward.coupon_valid_days),
        now=now,
        reward_id=int(row.id) if row is not None else None,
        source="sop",
    )


async def local_tag(name: str) -> Tag:
    """The tag with this name (a WeCom tag if the library has one, else a local tag,
    created in the local group ``SOP`` when missing)."""
    found = await Tag.filter(name=name, deleted=False).order_by("id").first()
    if found is not None:
        return found
    group = await TagGroup.filter(name=LOCAL_GROUP, source="local", deleted=False).first()
    if group is None:
        group = await TagGroup.create(name=LOCAL_GROUP, source="local")
    return await Tag.create(group_id=group.id, name=name[:64])


async def _tag(member_id: int, name: str, sop_id: str, now: datetime) -> None:
    tag = await local_tag(name)
    if await MemberTag.filter(member_id=member_id, tag_id=tag.id).exists():
        return
    try:
        async with in_transaction():  # a savepoint: a concurrent tagging is no error
            await MemberTag.create(
                member_id=member_id,
                tag_id=tag.id,
                source="local",
                set_by=f"sop:{sop_id}"[:64],
                created_at=now,
            )
    except IntegrityError:
        pass
