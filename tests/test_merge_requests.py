"""``members merge-requests``: the list, reject (audited, pending_key cleared) and approve
through the Merger protocol."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.cli import main
from bot.services import merge_requests, mobile
from bot.services.pii import MobileVault
from storage.models import AuditLog, Identity, Member, MergeRequest
from storage.repos import phone as repo
from tests.cli_support import HMAC_KEY, KEYS, MOBILE_KEY, with_db, write_config
from tests.test_phone_binding import RecordingMerger

SH = ZoneInfo("Asia/Shanghai")
NUMBER = "13800138000"


async def _seed(age: timedelta = timedelta(hours=3)) -> int:
    """Two chat members; the holder has NUMBER; one pending request, ``age`` old."""
    at = datetime.now(SH) - age
    vault = MobileVault(MOBILE_KEY, HMAC_KEY)
    wanting = await Member.create(code="WANTS001", created_at=at)
    holder = await Member.create(code="HOLDS001", created_at=at)
    for member, openid in ((wanting, "oWants"), (holder, "oHolds")):
        await Identity.create(
            kind="oa_openid",
            app="wx2c2769f8efd9abc2",
            value=openid,
            member_id=member.id,
            created_at=at,
        )
    await mobile.set_mobile(vault, holder.id, NUMBER, now=at)
    audit = repo.Audit("member:WANTS001", f"member:{wanting.id}", {})
    made = await repo.request_merge(
        wanting.id, holder.id, vault.lookup_hash(NUMBER), "holder has a chat identity", at, audit
    )
    return made.id


def test_the_list_shows_masked_mobile_both_codes_and_age(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, db_url, KEYS)
    request_id = with_db(db_url, _seed, fresh=True)
    capsys.readouterr()
    assert main(["--config", config, "members", "merge-requests"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"#{request_id:<6} pending   138****8000 ")
    assert "member WANTS001 <- holder HOLDS001  age 3h0m  holder has a chat identity" in out
    assert NUMBER not in out
    assert main(["--config", config, "members", "merge-requests", "--status", "rejected"]) == 0
    assert capsys.readouterr().out.strip() == "no merge requests"


def test_reject_records_the_decision_and_clears_the_pending_key(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, db_url, KEYS)
    request_id = with_db(db_url, _seed, fresh=True)
    argv = ["--config", config, "members", "merge-requests", "reject", str(request_id)]
    assert main([*argv, "--reason", "不是同一人", "--actor", "lisi"]) == 0
    assert capsys.readouterr().out.strip() == f"merge request {request_id}: rejected"

    async def check() -> None:
        row = await MergeRequest.get(id=request_id)
        assert (row.status, row.pending_key, row.decided_by) == ("rejected", None, "lisi")
        assert row.reason == "holder has a chat identity; rejected: 不是同一人"
        assert row.decided_at is not None
        audit = await AuditLog.get(action="merge_request.rejected")
        assert audit.actor == "lisi"
        assert audit.target == f"merge_request:{request_id}"
        # nothing moved: the holder keeps the number and its identity
        holder = await Member.get(code="HOLDS001")
        assert await Identity.filter(member_id=holder.id, kind="mobile_hash").count() == 1

    with_db(db_url, check)
    assert main([*argv, "--reason", "again"]) == 2
    assert f"merge request {request_id} is already rejected" in capsys.readouterr().err
    unknown = ["--config", config, "members", "merge-requests", "reject", "999"]
    assert main([*unknown, "--reason", "x"]) == 2
    assert "no merge request 999" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(argv)  # --reason is required
    assert exited.value.code == 2
    assert main([*argv, "--reason", "  "]) == 2
    assert "--reason is required" in capsys.readouterr().err
    listed = ["--config", config, "members", "merge-requests", "--status", "rejected"]
    assert main(listed) == 0
    assert "rejected  138****8000" in capsys.readouterr().out


def test_a_rejected_pair_may_ask_again(db_url: str, tmp_path: Path) -> None:
    async def work() -> tuple[bool, bool]:
        request_id = await _seed()
        now = datetime.now(SH)
        await merge_requests.reject(request_id, actor="lisi", reason="no", now=now)
        row = await MergeRequest.get(id=request_id)
        audit = repo.Audit("member:WANTS001", "", {})
        again = await repo.request_merge(
            row.member_id,
            row.holder_id,
            row.mobile_hash,
            "r",
            now,
            audit,  # type: ignore[attr-defined]
        )
        twice = await repo.request_merge(
            row.member_id,
            row.holder_id,
            row.mobile_hash,
            "r",
            now,
            audit,  # type: ignore[attr-defined]
        )
        return again.duplicate, twice.duplicate

    assert with_db(db_url, work, fresh=True) == (False, True)


@dataclass
class _Result:
    merge_id: int


class _Merger(RecordingMerger):
    async def __call__(self, *args: object, **kwargs: object) -> object:  # type: ignore[override]
        await super().__call__(*args, **kwargs)  # type: ignore[arg-type]
        return _Result(77)


def test_approve_asks_the_merger_to_merge_the_holder_into_the_member(db_url: str) -> None:
    merger = _Merger()

    async def work() -> None:
        request_id = await _seed()
        now = datetime.now(SH)
        merge_id = await merge_requests.approve(
            request_id, actor="lisi", now=now, merger=merger, services=None
        )
        assert merge_id == 77
        wanting, holder = await Member.get(code="WANTS001"), await Member.get(code="HOLDS001")
        assert merger.calls == [{"survivor": wanting.id, "merged": holder.id, "actor": "lisi"}]
        row = await MergeRequest.get(id=request_id)
        assert (row.status, row.pending_key, row.merge_id) == ("approved", None, 77)
        assert (await AuditLog.get(action="merge_request.approved")).actor == "lisi"
        with pytest.raises(merge_requests.RequestError, match="already approved"):
            await merge_requests.approve(
                request_id, actor="lisi", now=now, merger=merger, services=None
            )
        assert len(merger.calls) == 1

    with_db(db_url, work, fresh=True)


def test_a_refused_approval_leaves_the_request_pending(db_url: str) -> None:
    merger = RecordingMerger(refuse="both hold openids of one account")

    async def work() -> None:
        request_id = await _seed()
        with pytest.raises(RuntimeError, match="both hold"):
            await merge_requests.approve(
                request_id, actor="lisi", now=datetime.now(SH), merger=merger, services=None
            )
        row = await MergeRequest.get(id=request_id)
        assert row.status == "pending"
        assert row.pending_key is not None
        assert not await AuditLog.filter(action="merge_request.approved").exists()

    with_db(db_url, work, fresh=True)


async def _seed_wecom_holder() -> int:
    """The holder of NUMBER is a WeCom customer (no openid of the requester's account)."""
    at = datetime.now(SH) - timedelta(hours=1)
    vault = MobileVault(MOBILE_KEY, HMAC_KEY)
    wanting = await Member.create(code="WANTS002", created_at=at)
    holder = await Member.create(code="HOLDS002", created_at=at, points_balance=0)
    await Identity.create(
        kind="oa_openid", app="wx2c2769f8efd9abc2", value="oWants2", member_id=wanting.id,
        created_at=at,
    )  # fmt: skip
    await Identity.create(
        kind="wecom_external_userid", app="wwcorp", value="wmHolder", member_id=holder.id,
        created_at=at,
    )  # fmt: skip
    await mobile.set_mobile(vault, holder.id, NUMBER, now=at)
    audit = repo.Audit("member:WANTS002", f"member:{wanting.id}", {})
    made = await repo.request_merge(
        wanting.id, holder.id, vault.lookup_hash(NUMBER), "holder has a chat identity", at, audit
    )
    return made.id


def test_approve_merges_for_real_through_the_cli(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, db_url, KEYS)
    request_id = with_db(db_url, _seed_wecom_holder, fresh=True)
    argv = ["--config", config, "members", "merge-requests", "approve", str(request_id)]
    assert main([*argv, "--actor", "lisi"]) == 0
    assert capsys.readouterr().out.startswith(f"merge request {request_id}: approved; merge ")

    async def check() -> None:
        wanting = await Member.get(code="WANTS002")
        holder = await Member.get(code="HOLDS002")
        assert (holder.status, holder.merged_into_id) == ("merged", wanting.id)
        external = await Identity.get(kind="wecom_external_userid", value="wmHolder")
        assert external.member_id == wanting.id  # type: ignore[attr-defined]
        row = await MergeRequest.get(id=request_id)
        assert (row.status, row.pending_key, row.merge_id is not None) == ("approved", None, True)

    with_db(db_url, check)


def test_approve_of_two_openids_of_one_account_is_refused_and_stays_pending(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, db_url, KEYS)
    request_id = with_db(db_url, _seed, fresh=True)
    argv = ["--config", config, "members", "merge-requests", "approve", str(request_id)]
    assert main(argv) == 2
    assert "merge refused" in capsys.readouterr().err

    async def check() -> None:
        row = await MergeRequest.get(id=request_id)
        assert row.status == "pending"
        assert (await Member.get(code="HOLDS001")).status == "active"

    with_db(db_url, check)
