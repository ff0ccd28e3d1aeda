"""The copied official fixtures still match ../shared/payloads/, and every one parses."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import PAYLOADS

SHARED = Path(__file__).resolve().parents[2] / "shared" / "payloads"
OFFICIAL = sorted(p.name for p in PAYLOADS.iterdir() if p.is_file())


def test_at_least_23_official_files_are_collected() -> None:
    assert len([n for n in OFFICIAL if n.endswith(".xml")]) >= 23


@pytest.mark.parametrize("name", OFFICIAL)
def test_copy_matches_shared(name: str) -> None:
    if not SHARED.is_dir():
        pytest.skip("../shared/payloads is not beside this clone")
    assert (PAYLOADS / name).read_bytes() == (SHARED / name).read_bytes()


def test_nothing_in_shared_is_missing_here() -> None:
    if not SHARED.is_dir():
        pytest.skip("../shared/payloads is not beside this clone")
    assert sorted(p.name for p in SHARED.iterdir() if p.is_file()) == OFFICIAL
