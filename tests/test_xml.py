"""The hardened parser: the flat fast path agrees with the full parser everywhere."""

from __future__ import annotations

from pathlib import Path

import pytest
import xmltodict

from bot.wechat.xml import BadPayload, _parse_flat, parse_xml
from tests.conftest import PAYLOADS

FIXTURES = sorted(p for p in PAYLOADS.rglob("*.xml"))


def _reference(text: str) -> dict[str, object]:
    root = xmltodict.parse(text)["xml"] or {}
    return {k: "" if v is None else v for k, v in root.items()}


@pytest.mark.parametrize("path", FIXTURES, ids=[p.name for p in FIXTURES])
def test_fast_path_matches_xmltodict_on_every_fixture(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert parse_xml(text) == _reference(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<xml><A><![CDATA[x]]]]><![CDATA[>y]]></A></xml>", {"A": "x]]>y"}),
        ("<xml><A>a &lt; b</A></xml>", {"A": "a < b"}),
        ("<xml><A attr='1'>v</A></xml>", {"A": {"@attr": "1", "#text": "v"}}),
        ("<xml><A><B>1</B></A></xml>", {"A": {"B": "1"}}),
    ],
    ids=["split-cdata", "entity", "attribute", "nested"],
)
def test_anything_not_flat_goes_to_the_full_parser(text: str, expected: object) -> None:
    assert _parse_flat(text) is None
    assert parse_xml(text) == expected


def test_flat_details() -> None:
    text = (
        '<?xml version="1.0"?>\n<xml>\n <A> spaced </A><B/><C></C><D><![CDATA[ 中文 ]]></D></xml>'
    )
    assert _parse_flat(text) == {"A": "spaced", "B": "", "C": "", "D": "中文"}
    assert _parse_flat(text) == _reference(text)


def test_duplicates_are_refused_on_both_paths() -> None:
    with pytest.raises(BadPayload, match="more than once"):
        parse_xml("<xml><A>1</A><A>2</A></xml>")
    with pytest.raises(BadPayload, match="more than once"):
        parse_xml("<xml><A>1</A><A><B>2</B></A></xml>")
