"""注销: erase a member's personal data by walking the registry (storage/member_data.py).

For every classified model the member's rows are found from the ORM (``links``, or the
parent's links for ``follows``). ``erase="anonymise"`` clears the ``personal`` fields
(nullable → NULL, text → '', JSON → {}) and keeps the row, so ledger and order totals stay
exact; ``erase="delete"`` removes the rows (identities, phone codes). Then every remaining
text column of the member's rows is scrubbed of the member's identifiers (openids, the
mobile number and its hash, the birthday): event dedupe keys and idempotency keys embed
the sender's openid, so a merely classified column list would leave it behind. Each
identifier is replaced by one random token, which keeps unique keys unique and links to
nobody.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tortoise import connections, fields
from tortoise.expressions import Q
from tortoise.fields.relational import ForeignKeyFieldInstance
from tortoise.models import Model
from tortoise.queryset import QuerySet
from tortoise.transactions import in_transaction

from storage.member_data import MemberData, classified
from storage.models import AuditLog, Identity, Member, OutboxMessage
from storage.repos import audit_log
from storage.timeutil import utc

DELETED = "deleted"
ERASE_ACTION = "member.erase"
OUTBOX_UNSENDABLE = ("pending",)

__all__ = [
    "DELETED",
    "ERASE_ACTION",
    "Erased",
    "blank_values",
    "erase",
    "erase_again",
    "erased_among",
    "replace_all",
    "scrub_rows",
    "tokens_for",
]


@dataclass(frozen=True, slots=True)
class Erased:
    """What an erasure removed: the identities (for the cache) and rows per model."""

    member_id: int
    identities: tuple[tuple[str, str, str], ...]
    counts: dict[str, int]
    # identifier → its replacement token, for the second pass (never stored or logged)
    tokens: dict[str, str]


def blank_values(model: type[Model], names: Iterable[str]) -> dict[str, Any]:
    """The erased value of each personal field: NULL if nullable, else '' (text) or {}."""
    values: dict[str, Any] = {}
    for name in names:
        field = model._meta.fields_map[name]
        if field.null:
            values[name] = None
        elif isinstance(field, fields.JSONField):
            values[name] = {}
        elif isinstance(field, fields.CharField | fields.TextField):
            values[name] = ""
        else:
            raise TypeError(f"{model.__name__}.{name}: no erased value for {type(field).__name__}")
    return values


def _column(model: type[Model], link: str) -> str:
    """The filter name of a member link (a foreign key's source column, or the id column)."""
    field = model._meta.fields_map[link]
    return f"{link}_id" if isinstance(field, ForeignKeyFieldInstance) else link


def _parent_fk(model: type[Model], parent: str) -> str:
    for name, field in model._meta.fields_map.items():
        if isinstance(field, ForeignKeyFieldInstance) and field.related_model.__name__ == parent:
            return f"{name}_id"
    raise LookupError(f"{model.__name__} has no foreign key to {parent}")


async def member_rows(
    model: type[Model], data: MemberData, member_id: int, models: Mapping[str, type[Model]]
) -> QuerySet[Any]:
    """The rows of ``model`` that belong to the member (its own row for Member)."""
    if model is Member:
        return model.filter(id=member_id)
    if data.merge == "follows":
        parent = models[data.parent]
        parent_ids = await (
            await member_rows(parent, _data(parent), member_id, models)
        ).values_list("id", flat=True)
        return model.filter(**{f"{_parent_fk(model, data.parent)}__in": list(parent_ids)})
    if not data.links:
        return model.filter(**{f"{model._meta.pk_attr}__in": []})
    return model.filter(
        Q(*(Q(**{_column(model, link): member_id}) for link in data.links), join_type="OR")  # type: ignore[arg-type]
    )


def _data(model: type[Model]) -> MemberData:
    return classified()[model]


def _text_fields(model: type[Model]) -> list[str]:
    return [
        name
        for name, field in model._meta.fields_map.items()
        if isinstance(field, fields.CharField | fields.TextField | fields.JSONField)
        and name != model._meta.pk_attr
    ]


def replace_all(text: str, tokens: Mapping[str, str]) -> str:
    """``text`` with every identifier replaced by its token."""
    for secret, token in tokens.items():
        text = text.replace(secret, token)
    return text


def _replace(value: Any, tokens: Mapping[str, str]) -> Any:
    if value is None:
        return None
    if isinstance(value, str):
        return replace_all(value, tokens)
    return json.loads(replace_all(json.dumps(value, ensure_ascii=False), tokens))


async def scrub_rows(rows: QuerySet[Any], model: type[Model], tokens: Mapping[str, str]) -> int:
    """Replace every identifier in the text columns of ``rows``; how many rows changed."""
    names = _text_fields(model)
    if not names or not tokens:
        return 0
    pk = model._meta.pk_attr
    changed = 0
    for row in await rows.values(pk, *names):
        new = {n: _replace(row[n], tokens) for n in names}
        diff = {n: v for n, v in new.items() if v != row[n]}
        if diff:
            await model.filter(**{pk: row[pk]}).update(**diff)
            changed += 1
    return changed


async def _identities(member_id: int) -> tuple[tuple[str, str, str], ...]:
    rows = await Identity.filter(member_id=member_id).values_list("kind", "app", "value")
    return tuple((str(k), str(a), str(v)) for k, a, v in rows)


async def _walk(member_id: int, tokens: Mapping[str, str]) -> dict[str, int]:
    """Anonymise, delete and scrub the member's rows in every classified model."""
    registry = classified()
    models = {m.__name__: m for m in registry}
    counts: dict[str, int] = {}
    # Children first ("follows" rows hang off a parent that may be deleted).
    order = sorted(registry.items(), key=lambda item: item[1].merge != "follows")
    for model, data in order:
        if data.erase == "keep" and not data.links and data.merge != "follows":
            continue  # not linked to members by any column (the audit trail: see below)
        rows = await member_rows(model, data, member_id, models)
        name = model.__name__
        if data.erase == "delete":
            ids = await rows.values_list(model._meta.pk_attr, flat=True)
            counts[name] = await model.filter(**{f"{model._meta.pk_attr}__in": list(ids)}).delete()
            continue
        if data.erase == "anonymise" and data.personal:
            ids = list(await rows.values_list(model._meta.pk_attr, flat=True))
            pk_in = {f"{model._meta.pk_attr}__in": ids}
            if model is OutboxMessage:  # a message nobody can address any more is not sent
                await model.filter(**pk_in, status__in=OUTBOX_UNSENDABLE).update(
                    status="failed", reason="member erased"
                )
            counts[name] = await model.filter(**pk_in).update(**blank_values(model, data.personal))
        scrubbed = await scrub_rows(
            await member_rows(model, data, member_id, models), model, tokens
        )
        if scrubbed:
            counts[f"{name}.scrubbed"] = scrubbed
    # The audit trail names members in ``target``; its detail must not keep identifiers.
    await scrub_rows(AuditLog.filter(target=f"member:{member_id}"), AuditLog, tokens)
    return counts


def tokens_for(secrets_: Iterable[str]) -> dict[str, str]:
    """One random replacement token per identifier (longest first, so none splits another)."""
    unique = sorted({s for s in secrets_ if s}, key=len, reverse=True)
    return {s: f"erased-{secrets.token_hex(8)}" for s in unique}


async def erase(
    member_id: int, *, actor: str, now: datetime, extra_secrets: Iterable[str] = ()
) -> Erased | None:
    """Erase the member (one transaction); None when they are missing or already erased.

    ``extra_secrets`` are identifiers only the caller can know (the decrypted mobile).
    The member is marked ``deleted`` first with a conditional update, so two confirmations
    erase once.
    """
    async with in_transaction():
        member = await Member.filter(id=member_id).exclude(status=DELETED).first()
        if member is None:
            return None
        identities = await _identities(member_id)
        tokens = tokens_for(
            [
                *(value for _, _, value in identities),
                member.mobile_hash or "",
                member.birthday.isoformat() if member.birthday else "",
                *extra_secrets,
            ]
        )
        marked = (
            await Member.filter(id=member_id)
            .exclude(status=DELETED)
            .update(status=DELETED, deleted_at=utc(now))
        )
        if not marked:
            return None
        counts = await _walk(member_id, tokens)
        await audit_log.record(
            actor,
            ERASE_ACTION,
            f"member:{member_id}",
            {"code": member.code, "rows": counts},
            now,
        )
    return Erased(member_id, identities, counts, tokens)


async def erase_again(member_id: int, tokens: Mapping[str, str]) -> dict[str, int]:
    """Walk the erased member's rows once more, after the erasure committed.

    A writer that read the member as not erased (another process's inbound recorder)
    may commit rows while the erasure runs; it checks again after its insert, and this
    pass catches what it wrote before the member was marked (see docs/privacy.md).
    """
    if not await Member.filter(id=member_id, status=DELETED).exists():
        return {}
    async with in_transaction():
        return await _walk(member_id, tokens)


async def erased_among(member_ids: Iterable[int]) -> list[int]:
    """Which of these members are erased (one primary-key lookup).

    Raw SQL: it runs after every InboundEvent flush, where building the ORM query cost
    more than the lookup itself.
    """
    ids = sorted(set(member_ids))
    if not ids:
        return []
    conn = connections.get("default")
    postgres = conn.capabilities.dialect == "postgres"

    def mark(n: int) -> str:
        return f"${n}" if postgres else "?"

    found: list[int] = []
    for start in range(0, len(ids), _CHUNK):  # within SQLite's limit on bound variables
        chunk = ids[start : start + _CHUNK]
        marks = ", ".join(mark(n) for n in range(2, len(chunk) + 2))
        sql = f"SELECT id FROM member WHERE status = {mark(1)} AND id IN ({marks})"  # noqa: S608
        _, rows = await conn.execute_query(sql, [DELETED, *chunk])
        found += [int(row["id"]) for row in rows]
    return found


_CHUNK = 500
