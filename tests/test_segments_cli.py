"""``python -m bot segments preview|save|list|explain`` against a real database: TOML rule
files, audited saves, and bad files or rules as one line with exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.cli import main
from storage.models import AuditLog, Member, Segment
from tests.cli_support import with_db, write_config

AT = "2027-05-20T10:00"
RULE = """
all = [
  { field = "tier", in = ["gold"] },
  { any = [ { field = "points", min = 100 }, { field = "joined", from = 2027-01-01 } ] },
]
"""


async def _seed() -> list[str]:
    made = []
    for n, (tier, points) in enumerate([("gold", 500), ("gold", 10), ("silver", 900)]):
        row = await Member.create(
            code=f"C{n:04d}", tier=tier, points_balance=points, created_at="2026-01-01T00:00Z"
        )
        made.append(row.code)
    await Member.create(
        code="OPT1",
        tier="gold",
        points_balance=500,
        marketing_opt_out=True,
        created_at="2026-01-01T00:00Z",
    )
    return made


@pytest.fixture
def config(db_url: str, tmp_path: Path) -> str:
    with_db(db_url, _seed, fresh=True)
    return write_config(tmp_path, db_url)


def _rule_file(tmp_path: Path, text: str = RULE) -> str:
    path = tmp_path / "rule.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_preview_prints_count_channels_and_sample(
    config: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rule = _rule_file(tmp_path)
    assert main(["--config", config, "segments", "preview", "--rule", rule, "--at", AT]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "1 members (marketing)",
        "channels: oa_cs 0, oa_template 0, wecom 0, unreachable 1",
        "sample: C0000",
    ]
    args = ["--config", config, "segments", "preview", "--rule", rule, "--kind", "service"]
    assert main([*args, "--at", AT]) == 0
    assert capsys.readouterr().out.splitlines()[::2] == [
        "2 members (service)",
        "sample: C0000, OPT1",
    ]


def test_save_list_and_explain(
    config: str, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rule = _rule_file(tmp_path)
    base = ["--config", config, "segments"]
    assert main([*base, "save", "rich_gold", "--rule", rule, "--description", "金卡"]) == 0
    assert main([*base, "save", "rich_gold", "--rule", rule, "--actor", "ops"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "segment rich_gold created",
        "segment rich_gold replaced",
    ]
    saved = with_db(db_url, lambda: Segment.get(name="rich_gold"))
    assert saved.rule["all"][1]["any"][1] == {"field": "joined", "from": "2027-01-01"}
    audit = with_db(db_url, lambda: AuditLog.all().order_by("id").values_list("actor", "action"))
    assert audit == [("cli", "segment.create"), ("ops", "segment.replace")]
    assert main([*base, "list"]) == 0
    assert capsys.readouterr().out.split() == ["rich_gold", "3", "conditions"]
    assert main([*base, "explain", "rich_gold", "C0001", "--at", AT]) == 0
    lines = [line.split()[:2] for line in capsys.readouterr().out.splitlines()]
    assert lines == [
        ["yes", "all[0]"],
        ["no", "all[1].any[0]"],
        ["no", "all[1].any[1]"],
        ["yes", "base"],
        ["no", "rule"],
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "no such rule file"),
        ("all = [", "not valid TOML"),
        ('all = [{ field = "tier", in = ["gold"] }, { field = "age" }]', "all[1].field: unknown"),
        ('all = [{ field = "tier", in = ["platinum"] }]', "all[0].in: unknown tiers"),
        ("any = []", "any: an any group needs at least one item"),
    ],
)
def test_bad_files_are_one_line_and_exit_2(
    config: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    text: str | None,
    message: str,
) -> None:
    rule = str(tmp_path / "missing.toml") if text is None else _rule_file(tmp_path, text)
    for command in (["preview", "--rule", rule], ["save", "x", "--rule", rule]):
        assert main(["--config", config, "segments", *command]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1
        assert err.startswith(f"error: {rule}: ")
        assert message in err


def test_explain_unknown_names_are_one_line(
    config: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", config, "segments", "explain", "nothing", "C0000"]) == 2
    assert capsys.readouterr().err == "error: no saved segment named 'nothing'\n"
    rule = _rule_file(tmp_path)
    assert main(["--config", config, "segments", "save", "g", "--rule", rule]) == 0
    assert main(["--config", config, "segments", "explain", "g", "NOBODY"]) == 2
    assert capsys.readouterr().err == "error: member 'NOBODY' not found\n"
