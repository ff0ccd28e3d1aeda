"""The random prefix of encrypted replies: 16 fresh bytes per reply, from a pooled read."""

from __future__ import annotations

import os

import pytest

from bot.wechat.crypto import MessageCrypto
from storage import entropy

KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


def test_every_prefix_is_sixteen_unused_bytes_and_the_pool_refills(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reads: list[int] = []
    urandom = os.urandom

    def counting_urandom(n: int) -> bytes:
        reads.append(n)
        return urandom(n)

    monkeypatch.setattr(entropy.os, "urandom", counting_urandom)
    pool = entropy.RandomPool(size=64)  # 4 prefixes per read
    prefixes = [pool() for _ in range(10)]
    assert all(len(p) == 16 for p in prefixes)
    assert len(set(prefixes)) == 10  # never the same bytes twice
    assert reads == [64, 64, 64]  # 4 + 4 + 2: a read only when the pool runs out


def test_a_pool_cut_in_anything_but_16_byte_pieces_is_refused() -> None:
    for size in (0, 8, 40):
        with pytest.raises(ValueError, match="multiple of 16"):
            entropy.RandomPool(size=size)


def test_a_forked_child_drops_the_parents_pool() -> None:
    pool = entropy.RandomPool(size=64)
    pool()
    pool._drop()  # what the after-fork hook runs in the child
    assert pool._pool == b""
    assert len(pool()) == 16


def test_replies_get_distinct_prefixes_and_still_decrypt() -> None:
    box = MessageCrypto("token", KEY, "wx0123456789abcdef")
    sealed = [box.encrypt("<xml>hi</xml>") for _ in range(300)]  # past one 4 KiB pool
    assert len(set(sealed)) == 300  # same text, another random prefix each time
    assert all(box.decrypt(c) == "<xml>hi</xml>" for c in sealed)
