"""Tortoise models. Correctness lives in unique constraints and transactions.

Schema changes ship as tortoise's built-in migrations in ``storage/migrations/``.
The first line of a model docstring becomes the table comment, and tortoise neither
escapes quotes in it nor survives a semicolon there on SQLite: keep ' " and ; out of that
line (tests/test_migrations.py applies every migration to SQLite and catches it).
"""

from storage.models.broadcast import Broadcast, BroadcastConfirmation, MassJob, Segment
from storage.models.commerce import Coupon, Redemption, Reward
from storage.models.intake import InboundEvent, OutboxMessage, PlatformToken
from storage.models.members import (
    AuditLog,
    Consent,
    Identity,
    Member,
    MemberMerge,
    MemberTag,
    Staff,
    Tag,
    TagGroup,
)
from storage.models.points import (
    GrowthEntry,
    Order,
    OrderRefund,
    PointsAllocation,
    PointsEntry,
    PointsLot,
    SignIn,
)
from storage.models.privacy import MergeRequest, PhoneVerification
from storage.models.sop import SopRun, Touchpoint
from storage.models.wecom import (
    ContactWay,
    CustomerGroup,
    CustomerTag,
    CustomerTransfer,
    GroupMember,
    StaffCustomer,
)

__all__ = [
    "AuditLog",
    "Broadcast",
    "BroadcastConfirmation",
    "Consent",
    "ContactWay",
    "Coupon",
    "CustomerGroup",
    "CustomerTag",
    "CustomerTransfer",
    "GroupMember",
    "GrowthEntry",
    "Identity",
    "InboundEvent",
    "MassJob",
    "Member",
    "MemberMerge",
    "MemberTag",
    "MergeRequest",
    "Order",
    "OrderRefund",
    "OutboxMessage",
    "PhoneVerification",
    "PlatformToken",
    "PointsAllocation",
    "PointsEntry",
    "PointsLot",
    "Redemption",
    "Reward",
    "Segment",
    "SignIn",
    "SopRun",
    "Staff",
    "StaffCustomer",
    "Tag",
    "TagGroup",
    "Touchpoint",
]
