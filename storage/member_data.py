"""Where a member's data lives: every model classified, read from the ORM's registry.

Merge, undo, deletion (注销) and export walk ``CLASSIFIED`` rather than a hand-kept list
of tables, and ``unclassified()`` names any model the ORM knows that this file does not
(a test fails on it, so a new table cannot silently escape a merge or an erasure).

For each model:
- ``links``: fields holding a member id (foreign keys to Member or plain id columns);
- ``merge``: ``move`` (rows are re-pointed to the survivor and recorded, so an undo
  moves exactly those back), ``keep`` (history that stays as written), ``member`` (the
  Member table itself) or ``follows`` (no member column: the rows belong to a parent that
  moves, e.g. allocations with their entry);
- ``personal``: fields with personal data, cleared or replaced on erasure;
- ``erase``: ``anonymise`` (clear ``personal``, keep the row, so ledger and order totals
  stay exact), ``delete`` (remove the rows: identities, codes) or ``keep``;
- ``export``: part of ``members export``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tortoise import Tortoise
from tortoise.fields.relational import ForeignKeyFieldInstance
from tortoise.models import Model

Merge = Literal["move", "keep", "member", "follows"]
Erase = Literal["anonymise", "delete", "keep"]

__all__ = ["CLASSIFIED", "UNLINKED", "MemberData", "classified", "member_links", "unclassified"]


@dataclass(frozen=True, slots=True)
class MemberData:
    """How one model holds member data (see the module docstring)."""

    links: tuple[str, ...]
    merge: Merge
    personal: tuple[str, ...] = ()
    erase: Erase = "keep"
    export: bool = True
    parent: str = ""  # for merge="follows": the model whose rows these belong to


CLASSIFIED: dict[str, MemberData] = {
    "Member": MemberData(
        links=("merged_into_id", "referred_by_id"),
        merge="member",
        personal=("mobile_cipher", "mobile_hash", "birthday", "birth_md", "name"),
        erase="anonymise",
    ),
    "Identity": MemberData(links=("member",), merge="move", personal=("value",), erase="delete"),
    "MemberMerge": MemberData(links=("survivor", "merged"), merge="keep"),
    "MergeRequest": MemberData(
        links=("member", "holder"), merge="keep", personal=("mobile_hash",), erase="anonymise"
    ),
    "PhoneVerification": MemberData(
        links=("member",),
        merge="keep",
        personal=("mobile_cipher", "mobile_hash"),
        erase="delete",
        export=False,
    ),
    "MemberTag": MemberData(links=("member",), merge="move"),
    "Consent": MemberData(links=("member",), merge="move"),
    "PointsEntry": MemberData(links=("member",), merge="move"),
    "PointsLot": MemberData(links=("member",), merge="move"),
    "PointsAllocation": MemberData(links=(), merge="follows", parent="PointsEntry"),
    "GrowthEntry": MemberData(links=("member",), merge="move"),
    "SignIn": MemberData(links=("member",), merge="move"),
    "Order": MemberData(links=("member",), merge="move"),
    "OrderRefund": MemberData(links=(), merge="follows", parent="Order"),
    "Redemption": MemberData(links=("member",), merge="move"),
    "Coupon": MemberData(links=("member",), merge="move"),
    "InboundEvent": MemberData(
        links=("member_id",),
        merge="keep",
        personal=("sender", "payload"),
        erase="anonymise",
        export=False,
    ),
    "OutboxMessage": MemberData(
        links=("member_id",),
        merge="keep",
        personal=("recipient", "payload"),
        erase="anonymise",
        export=False,
    ),
    # SOP touches stay with the member they were sent to (a merge keeps the history, so
    # the survivor's once-per windows are its own); no personal data in them.
    "Touchpoint": MemberData(links=("member_id",), merge="keep"),
    "StaffCustomer": MemberData(
        links=("member",),
        merge="move",
        personal=("remark", "description"),
        erase="anonymise",
    ),
    "CustomerTag": MemberData(links=(), merge="follows", parent="StaffCustomer"),
    "GroupMember": MemberData(
        links=("member",), merge="move", personal=("group_nickname",), erase="anonymise"
    ),
    "CustomerTransfer": MemberData(links=("member",), merge="keep", export=False),
    # The audit trail keeps who did what; member ids appear in ``target`` as text.
    "AuditLog": MemberData(links=(), merge="keep", export=False),
}

# Models with no member data at all (tokens, tag library, staff, the reward catalogue).
UNLINKED: frozenset[str] = frozenset(
    {
        "PlatformToken",
        "TagGroup",
        "Tag",
        "Staff",
        "Reward",
        "CustomerGroup",
        "ContactWay",
        "SopRun",
        "Segment",
        "Broadcast",
        "MassJob",
        "BroadcastConfirmation",
    }
)

_ID_COLUMNS = ("member_id", "merged_into_id", "referred_by_id")


def _models() -> dict[str, type[Model]]:
    if not Tortoise.apps:
        raise RuntimeError("Tortoise is not initialised: open the database first")
    return dict(Tortoise.apps["models"])


def member_links(model: type[Model]) -> set[str]:
    """Fields of ``model`` that point at a member, as the ORM describes them."""
    found: set[str] = set()
    for name, field in model._meta.fields_map.items():
        if isinstance(field, ForeignKeyFieldInstance) and field.related_model.__name__ == "Member":
            found.add(name)
        elif name in _ID_COLUMNS and name.removesuffix("_id") not in model._meta.fk_fields:
            found.add(name)  # a plain id column, not the source column of a foreign key
    return found


def classified() -> dict[type[Model], MemberData]:
    """Every registered model with member data, with its classification."""
    return {model: CLASSIFIED[name] for name, model in _models().items() if name in CLASSIFIED}


def unclassified() -> list[str]:
    """Problems: models neither classified nor unlinked, and links the ORM shows but the
    classification misses (empty when this file covers the registry)."""
    problems: list[str] = []
    for name, model in sorted(_models().items()):
        links = member_links(model)
        if name in UNLINKED:
            if links:
                problems.append(f"{name} is listed as unlinked but links members by {links}")
            continue
        data = CLASSIFIED.get(name)
        if data is None:
            problems.append(f"{name} is not classified in storage/member_data.py")
            continue
        missing = links - set(data.links)
        if missing:
            problems.append(f"{name}: member links {sorted(missing)} are not classified")
        if data.merge == "follows" and data.parent not in CLASSIFIED:
            problems.append(f"{name} follows {data.parent!r}, which is not classified")
    for name in sorted(set(CLASSIFIED) - set(_models())):
        problems.append(f"{name} is classified but not a registered model")
    return problems
