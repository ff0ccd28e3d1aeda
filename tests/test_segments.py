"""Segment rules select exactly the crafted members, through one compiled SQL condition
(the same on SQLite and PostgreSQL): every condition type, nesting, the marketing and
service bases, preview and explain."""

from __future__ import annotations

import json
import re
import tomllib
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings
from sop.segments import (
    SegmentError,
    compile_segment,
    dump_rule,
    explain,
    parse_rule,
    preview,
)
from storage.models import Member
from tests.audience_support import follower, member, staff_customer, tag
from tests.conftest import OA_APPID
from tests.segment_support import NOW, SH, code_of, matching, one, order


async def test_tier_and_tags(settings: Settings) -> None:
    gold = await member(tier="gold")
    silver = await member(tier="silver")
    basic = await member()
    for name in ("vip", "coffee"):
        await tag(gold, name)
    await tag(silver, "vip")
    await tag(basic, "blocked", deleted=True)
    assert await matching(settings, one({"field": "tier", "in": ["gold", "silver"]})) == [
        gold,
        silver,
    ]
    tags: list[tuple[dict[str, Any], list[int]]] = [
        ({"any": ["coffee", "tea"]}, [gold]),
        ({"any": ["vip"]}, [gold, silver]),
        ({"all": ["vip", "coffee"]}, [gold]),
        ({"none": ["coffee"]}, [silver, basic]),
        ({"none": ["blocked"]}, [gold, silver, basic]),  # a deleted tag counts for nobody
        ({"any": ["blocked"]}, []),
        ({"any": ["vip"], "none": ["coffee"]}, [silver]),
    ]
    for keys, expected in tags:
        assert await matching(settings, one({"field": "tags", **keys})) == expected, keys


async def test_points_growth_and_spend_ranges(settings: Settings) -> None:
    low = await member(points_balance=50, growth=10)
    mid = await member(points_balance=100, growth=500)
    high = await member(points_balance=501, growth=5000)
    points = one({"field": "points", "min": 100, "max": 500})
    assert await matching(settings, points) == [mid]
    assert await matching(settings, one({"field": "points", "max": 100})) == [low, mid]
    assert await matching(settings, one({"field": "growth", "min": 500})) == [mid, high]
    await order(low, 20_000, NOW - timedelta(days=3))
    await order(mid, 30_000, NOW - timedelta(days=3), refunded_fen=25_000)
    await order(mid, 4_000, NOW - timedelta(days=400))
    spend = one({"field": "total_spend", "min_fen": 10_000})
    assert await matching(settings, spend) == [low]
    assert await matching(settings, one({"field": "total_spend", "max_fen": 9_000})) == [mid, high]


async def test_inactive_days_count_business_days(settings: Settings) -> None:
    today = await member(last_active_at=datetime(2027, 5, 20, 0, 30, tzinfo=SH))
    # 23:30 Shanghai on 20 April is 15:30Z: the business date decides, not the UTC one
    month = await member(last_active_at=datetime(2027, 4, 20, 23, 30, tzinfo=SH))
    never = await member(created_at=datetime(2026, 1, 1, tzinfo=SH))
    assert await matching(settings, one({"field": "inactive_days", "min": 30})) == [month, never]
    assert await matching(settings, one({"field": "inactive_days", "min": 31})) == [never]
    window = one({"field": "inactive_days", "min": 1, "max": 30})
    assert await matching(settings, window) == [month]
    assert await matching(settings, one({"field": "inactive_days", "max": 0})) == [today]


async def test_last_purchase_within_and_before(settings: Settings) -> None:
    recent = await member()
    old = await member()
    refunded = await member()
    await member()  # never bought
    await order(recent, 1000, datetime(2027, 2, 20, 9, tzinfo=SH))  # day 90 of the last 90
    await order(old, 1000, datetime(2027, 2, 19, 23, tzinfo=SH))
    await order(refunded, 1000, NOW - timedelta(days=1), refunded_fen=1000)
    assert await matching(settings, one({"field": "last_purchase", "within_days": 90})) == [recent]
    assert await matching(settings, one({"field": "last_purchase", "before_days": 90})) == [old]
    assert await matching(settings, one({"field": "last_purchase", "within_days": 91})) == [
        recent,
        old,
    ]


async def test_birthday_month_channel_and_joined(settings: Settings) -> None:
    may1 = await member(birthday=date(1990, 5, 1), channel="store_01")
    may31 = await member(birthday=date(1991, 5, 31), channel="store_02")
    june = await member(birthday=date(1990, 6, 1), channel="store_01")
    await member(created_at=datetime(2027, 1, 1, 0, 10, tzinfo=SH))
    assert await matching(settings, one({"field": "birthday_month", "in": [5]})) == [may1, may31]
    assert await matching(settings, one({"field": "birthday_month", "in": [6, 12]})) == [june]
    assert await matching(settings, one({"field": "channel", "in": ["store_01"]})) == [may1, june]
    joined = one({"field": "joined", "from": "2026-12-01", "to": "2027-01-01"})
    newcomer = await Member.filter(created_at__gt=datetime(2026, 1, 1, tzinfo=SH)).first()
    assert newcomer is not None
    assert await matching(settings, joined) == [newcomer.id]
    assert await matching(settings, one({"field": "joined", "to": "2026-12-31"})) == [
        may1,
        may31,
        june,
    ]


async def test_followed_and_wecom_customer(settings: Settings) -> None:
    fan = await member()
    gone = await member()
    other_account = await member()
    customer = await member()
    ended = await member()
    await follower(fan, OA_APPID)
    await follower(gone, OA_APPID, followed=False)
    await follower(other_account, "wxcompat00000001")
    await staff_customer(customer)
    await staff_customer(ended, status="deleted")
    everyone = [fan, gone, other_account, customer, ended]
    assert await matching(settings, one({"field": "followed", "is": True})) == [fan, other_account]
    brand = one({"field": "followed", "is": True, "account": "brand"})
    assert await matching(settings, brand) == [fan]
    not_brand = one({"field": "followed", "is": False, "account": "brand"})
    assert await matching(settings, not_brand) == [x for x in everyone if x != fan]
    assert await matching(settings, one({"field": "wecom_customer", "is": True})) == [customer]
    assert await matching(settings, one({"field": "wecom_customer", "is": False})) == [
        fan,
        gone,
        other_account,
        ended,
    ]


async def test_rfm_quintiles(settings: Settings) -> None:
    # five buyers: the later, the more often and the more they buy, the higher each score
    buyers = [await member() for _ in range(5)]
    await member()  # no orders: no score at all
    for rank, who in enumerate(buyers):
        for n in range(rank + 1):
            await order(who, 1000 * (rank + 1), NOW - timedelta(days=50 - 10 * rank + n))
    best = one({"field": "rfm", "recency": [5], "frequency": [5], "monetary": [5]})
    assert await matching(settings, best) == [buyers[4]]
    assert await matching(settings, one({"field": "rfm", "recency": [1, 2]})) == buyers[:2]
    assert await matching(settings, one({"field": "rfm", "monetary": [3, 4, 5]})) == buyers[2:]
    # a merged member's orders do not take a quintile from the active ones
    merged = await member(status="merged")
    await order(merged, 10**9, NOW)
    assert await matching(settings, best) == [buyers[4]]


GOLD = ["gold"]


async def test_nested_groups(settings: Settings) -> None:
    gold_vip = await member(tier="gold")
    gold = await member(tier="gold", points_balance=1000)
    silver_vip = await member(tier="silver")
    silver = await member(tier="silver")
    await member(tier="basic", points_balance=1000)
    await tag(gold_vip, "vip")
    await tag(silver_vip, "vip")
    rule: dict[str, Any] = {
        "any": [
            {"all": [{"field": "tier", "in": GOLD}, {"field": "tags", "any": ["vip"]}]},
            {
                "all": [
                    {"field": "points", "min": 500},
                    {"any": [{"field": "tier", "in": ["gold"]}]},
                ]
            },
            {"all": [{"field": "tier", "in": ["silver"]}, {"field": "tags", "none": ["vip"]}]},
        ]
    }
    assert await matching(settings, rule) == [gold_vip, gold, silver]
    assert await matching(settings, {"all": rule["any"][2:]}) == [silver]
    assert len(await matching(settings, {"all": []})) == 5


async def test_bases_marketing_excludes_opted_out_merged_and_erased_never(
    settings: Settings,
) -> None:
    normal = await member(tier="gold")
    opted_out = await member(tier="gold", marketing_opt_out=True)
    await member(tier="gold", status="merged")
    await member(tier="gold", deleted_at=NOW - timedelta(days=1))
    rule = one({"field": "tier", "in": ["gold"]})
    assert await matching(settings, rule, kind="marketing") == [normal]
    assert await matching(settings, rule, kind="service") == [normal, opted_out]
    assert await matching(settings, {"all": []}, kind="marketing") == [normal]


async def test_preview_counts_splits_and_samples(settings: Settings) -> None:
    window = await member(tier="gold")
    await follower(window, OA_APPID, last_message_at=NOW - timedelta(hours=1))
    template = await member(tier="gold")
    await follower(template, OA_APPID)
    wecom = await member(tier="gold")
    await staff_customer(wecom)
    nowhere = await member(tier="gold")
    await member(tier="gold", marketing_opt_out=True)
    rule = parse_rule(one({"field": "tier", "in": ["gold"]}))
    service = await preview(rule, kind="service", settings=settings, now=NOW, sample=2)
    assert service.count == 5
    assert service.channels == {"oa_cs": 1, "oa_template": 1, "wecom": 1, "unreachable": 2}
    assert service.sample == [await code_of(window), await code_of(template)]
    marketing = await preview(rule, kind="marketing", settings=settings, now=NOW)
    assert marketing.count == 4
    # marketing never goes by template: the follower without a window is unreachable
    assert marketing.channels == {"oa_cs": 1, "oa_template": 0, "wecom": 1, "unreachable": 2}
    assert marketing.sample == [await code_of(m) for m in (window, template, wecom, nowhere)]


async def test_explain_each_condition(settings: Settings) -> None:
    who = await member(tier="gold", points_balance=80, marketing_opt_out=True)
    await tag(who, "vip")
    rule = parse_rule(
        {
            "all": [
                {"field": "tier", "in": ["gold"]},
                {"any": [{"field": "points", "min": 100}, {"field": "tags", "any": ["vip"]}]},
            ]
        }
    )
    code = await code_of(who)
    found = await explain(rule, code, settings=settings, now=NOW)
    assert [(r.path, r.met) for r in found] == [
        ("all[0]", True),
        ("all[1].any[0]", False),
        ("all[1].any[1]", True),
        ("base", False),  # opted out of marketing
        ("rule", False),
    ]
    assert found[0].description == "tier in gold"
    assert found[1].description == "points balance at least 100"
    service = await explain(rule, who, settings=settings, now=NOW, kind="service")
    assert [(r.path, r.met) for r in service][-2:] == [("base", True), ("rule", True)]


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"all": [{"field": "tier", "in": ["gold"]}, {"field": "colour"}]}, "all[1].field"),
        ({"all": [{"field": "tier", "in": ["gold"]}, {"field": "points"}]}, "all[1]"),
        ({"all": [{"any": [{"field": "points", "min": "x"}]}]}, "all[0].any[0].min"),
        ({"all": [{"field": "tier", "in": ["gold"], "extra": 1}]}, "all[0].extra"),
        ({"all": [{"field": "birthday_month", "in": [13]}]}, "all[0]"),
        ({"all": [{"field": "rfm", "recency": [0]}]}, "all[0]"),
        ({"all": [{"field": "joined", "from": "2027-02-30"}]}, "all[0].from"),
        ({"any": []}, "any"),
        ({"all": [], "any": []}, ""),
        ({"some": []}, ""),
        ({"all": "tier"}, "all"),
        ({"all": [[1]]}, "all[0]"),
        ({"all": [{"field": "tags", "any": ["x"] * 501}]}, "all[0].any"),
    ],
)
def test_bad_rules_name_the_path(data: dict[str, Any], path: str) -> None:
    with pytest.raises(SegmentError) as caught:
        parse_rule(data)
    assert caught.value.path == path
    assert str(caught.value).startswith(f"{path}: " if path else caught.value.problem)


def test_settings_dependent_errors_name_the_path(settings: Settings) -> None:
    unknown_tier = parse_rule({"all": [{"any": [{"field": "tier", "in": ["platinum"]}]}]})
    with pytest.raises(SegmentError, match=r"^all\[0\]\.any\[0\]\.in: unknown tiers"):
        compile_segment(unknown_tier, kind="marketing", settings=settings, now=NOW)
    account = parse_rule(one({"field": "followed", "is": True, "account": "nope"}))
    with pytest.raises(SegmentError, match=r"^all\[0\]\.account: "):
        compile_segment(account, kind="marketing", settings=settings, now=NOW)
    with pytest.raises(SegmentError, match=r"^kind: "):
        compile_segment(parse_rule({"all": []}), kind="promo", settings=settings, now=NOW)


def test_dump_reads_back_to_the_same_rule() -> None:
    data = {
        "any": [
            {"field": "joined", "from": "2027-01-01"},
            {"all": [{"field": "followed", "is": True}, {"field": "rfm", "recency": [5]}]},
        ]
    }
    rule = parse_rule(data)
    assert dump_rule(rule) == data
    assert parse_rule(dump_rule(rule)) == rule


def test_a_rule_has_a_size_limit() -> None:
    many = {"all": [{"field": "points", "min": n} for n in range(201)]}
    with pytest.raises(SegmentError, match=r"^all\[200\]: "):
        parse_rule(many)
    groups = {"any": [{"all": []} for _ in range(201)]}
    with pytest.raises(SegmentError, match=r"^any\[200\]: a rule has at most 200"):
        parse_rule(groups)
    deep: dict[str, Any] = {"all": []}
    for _ in range(7):
        deep = {"all": [deep]}
    with pytest.raises(SegmentError, match="nest at most"):
        parse_rule(deep)


def test_the_documented_examples_parse_and_compile(settings: Settings) -> None:
    text = (Path(__file__).parent.parent / "docs" / "segments.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```(json|toml)\n(.*?)```", text, flags=re.DOTALL)
    assert len(blocks) == 3
    for kind, body in blocks:
        data = json.loads(body) if kind == "json" else tomllib.loads(body)
        rule = parse_rule(data)
        assert compile_segment(rule, kind="marketing", settings=settings, now=NOW).text
