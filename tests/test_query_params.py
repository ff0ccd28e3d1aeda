"""The callback's signing parameters parsed from the raw query string, as aiohttp would."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from yarl import URL

from bot.wechat.views import query_params

NAMES = ["signature", "msg_signature", "timestamp", "nonce", "encrypt_type", "openid", "x"]


def _as_aiohttp(query_string: str) -> dict[str, str]:
    query = URL(f"/wechat/demo?{query_string}").query
    return {name: query[name] for name in NAMES[:5] if name in query}


@pytest.mark.parametrize(
    "query_string",
    [
        "signature=ab12&timestamp=1700000000&nonce=42&openid=o1&encrypt_type=aes&msg_signature=cd",
        "timestamp=1&timestamp=2&nonce=a+b&signature=%61%62",
        "%73ignature=x&nonce=&encrypt_type",
        "",
        "&&=&nonce=%E7%AD%BE",
    ],
)
def test_real_and_odd_query_strings(query_string: str) -> None:
    assert query_params(query_string) == _as_aiohttp(query_string)


_PART = st.tuples(
    st.sampled_from([*NAMES, "%6Eonce", "nonce+"]),
    st.text(alphabet="ab1+%2B&=%20z;", max_size=6),
)


@given(st.lists(_PART, max_size=6))
def test_any_query_string_parses_as_aiohttp_parses_it(parts: list[tuple[str, str]]) -> None:
    query_string = "&".join(f"{name}={value}" for name, value in parts)
    assert query_params(query_string) == _as_aiohttp(query_string)
