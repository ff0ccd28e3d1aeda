"""The fake's WeCom state: staff, customers and their follow relations, tags, tasks, groups."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Staff:
    """A corp member with customer-contact permission."""

    userid: str
    name: str


@dataclass
class Follow:
    """One staff member's relation with a customer; corp tags live here."""

    userid: str
    remark: str = ""
    description: str = ""
    state: str = ""
    add_way: int = 1
    createtime: int = 0
    oper_userid: str = ""
    tags: list[str] = field(default_factory=list)


@dataclass
class Customer:
    """An external contact (客户)."""

    external_userid: str
    name: str
    unionid: str = ""
    gender: int = 0
    avatar: str = ""
    follows: dict[str, Follow] = field(default_factory=dict)
    received: dict[str, int] = field(default_factory=dict)  # receive period → group messages


@dataclass
class CorpTag:
    """A tag in the corp tag library."""

    id: str
    name: str
    create_time: int
    order: int = 0


@dataclass
class TagGroup:
    """A corp tag group."""

    group_id: str
    group_name: str
    create_time: int
    order: int = 0
    tags: list[CorpTag] = field(default_factory=list)


@dataclass
class WelcomeCode:
    """A single-use WelcomeCode from an add_external_contact event."""

    code: str
    userid: str
    external_userid: str
    issued_at: float
    used: bool = False


@dataclass
class SendEntry:
    """One recipient of a group-message task and its send status."""

    external_userid: str
    chat_id: str
    userid: str
    status: int
    send_time: int = 0

    def as_json(self) -> dict[str, Any]:
        """The get_groupmsg_send_result row."""
        row: dict[str, Any] = {"userid": self.userid, "status": self.status}
        if self.external_userid:
            row["external_userid"] = self.external_userid
        if self.chat_id:
            row["chat_id"] = self.chat_id
        if self.send_time:
            row["send_time"] = self.send_time
        return row


@dataclass
class GroupMsg:
    """An add_msg_template task: staff confirm it, then it is sent."""

    msgid: str
    chat_type: str
    sender: str
    text: str
    attachments: list[Any]
    created_at: float
    entries: list[SendEntry] = field(default_factory=list)


@dataclass
class GroupMember:
    """A member of a customer group."""

    userid: str
    type: int
    join_time: int
    join_scene: int = 1
    invitor: str = ""
    unionid: str = ""
    name: str = ""


@dataclass
class GroupChat:
    """A customer group (客户群)."""

    chat_id: str
    name: str
    owner: str
    create_time: int
    notice: str = ""
    status: int = 0
    members: list[GroupMember] = field(default_factory=list)
    admins: list[str] = field(default_factory=list)
    member_version: str = "1"
    received: dict[str, int] = field(default_factory=dict)  # receive period → group messages


@dataclass
class Transfer:
    """A customer handed from one staff member to another (taken over after 24 h)."""

    handover: str
    takeover: str
    external_userid: str
    created_at: float
    done: bool = False
    result: int = 1  # once done: 1 taken over, 3 the customer refused, 4 takeover at its limit


@dataclass
class CorpState:
    """The WeCom corp and everything the platform keeps for it."""

    corp_id: str
    agent_id: int
    agent_secret: str
    contact_secret: str
    staff: dict[str, Staff] = field(default_factory=dict)
    customers: dict[str, Customer] = field(default_factory=dict)
    tag_groups: list[TagGroup] = field(default_factory=list)
    welcome_codes: dict[str, WelcomeCode] = field(default_factory=dict)
    group_msgs: dict[str, GroupMsg] = field(default_factory=dict)
    group_chats: dict[str, GroupChat] = field(default_factory=dict)
    contact_ways: dict[str, dict[str, Any]] = field(default_factory=dict)
    transfers: list[Transfer] = field(default_factory=list)
    # external_userid → the transfer_result status its next handover ends with (3 refused,
    # 4 the takeover staff member is at the customer limit); absent: taken over.
    transfer_outcomes: dict[str, int] = field(default_factory=dict)
    # The corp's receive rule for group messages (common.RECEIVE_RULES): month | week | day.
    receive_rule: str = "month"
    next_id: int = 1

    def new_id(self, prefix: str) -> str:
        """A fresh id such as ``etfake0003`` (ids stay deterministic for tests)."""
        self.next_id += 1
        return f"{prefix}{self.next_id:04d}"

    def find_tag(self, tag_id: str) -> tuple[TagGroup, CorpTag] | None:
        """The group and tag for a tag id."""
        for group in self.tag_groups:
            for tag in group.tags:
                if tag.id == tag_id:
                    return group, tag
        return None

    def follow(self, userid: str, external_userid: str) -> Follow | None:
        """The relation between a staff member and a customer, if any."""
        customer = self.customers.get(external_userid)
        return None if customer is None else customer.follows.get(userid)
