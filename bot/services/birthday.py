"""生日: parse and validate a birthday, and set it once (it cannot be changed by chat)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from storage.repos import profile

MAX_AGE = 120
_FORMATS = (
    re.compile(r"(?P<y>\d{4})-(?P<m>\d{1,2})-(?P<d>\d{1,2})"),
    re.compile(r"(?P<y>\d{4})/(?P<m>\d{1,2})/(?P<d>\d{1,2})"),
    re.compile(r"(?P<y>\d{4})\.(?P<m>\d{1,2})\.(?P<d>\d{1,2})"),
    re.compile(r"(?P<y>\d{4})年(?P<m>\d{1,2})月(?P<d>\d{1,2})日?"),
    re.compile(r"(?P<y>\d{4})(?P<m>\d{2})(?P<d>\d{2})"),
)


class InvalidBirthday(ValueError):
    """Not a date, a date in the future, or an age outside 0–120."""


@dataclass(frozen=True, slots=True)
class BirthdayResult:
    """``set`` when this call stored it, else the birthday stored before (locked)."""

    birthday: date
    set: bool


def parse(text: str, today: date) -> date:
    """A birthday from 1990-05-20, 1990/05/20, 1990.05.20, 1990年5月20日 or 19900520."""
    value = text.strip()
    found = next((m for p in _FORMATS if (m := p.fullmatch(value))), None)
    if found is None:
        raise InvalidBirthday("format")
    try:
        born = date(int(found["y"]), int(found["m"]), int(found["d"]))
    except ValueError:
        raise InvalidBirthday("no such date") from None
    if born > today:
        raise InvalidBirthday("in the future")
    if age(born, today) > MAX_AGE:
        raise InvalidBirthday("too old")
    return born


def age(born: date, today: date) -> int:
    """Completed years on ``today``."""
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def month_day(born: date) -> int:
    """MMDD as stored in ``birth_md`` (20 May → 520)."""
    return born.month * 100 + born.day


async def set_once(member_id: int, born: date) -> BirthdayResult:
    """Store the birthday unless one is stored; the stored one wins (conditional update)."""
    if await profile.set_birthday_once(member_id, born, month_day(born)):
        return BirthdayResult(born, set=True)
    stored = await profile.birthday_of(member_id)
    if stored is None:
        raise LookupError(f"no member {member_id}")
    return BirthdayResult(stored, set=False)


async def stored(member_id: int) -> date | None:
    """The member's birthday, if set."""
    return await profile.birthday_of(member_id)
