"""WeCom APIs, one module per API group.

The agent secret and the 客户联系 (contact) secret give different tokens, so the app's
messages and the external-contact APIs use two callers.
"""

from __future__ import annotations

from bot.clients.caller import ApiCaller
from bot.clients.wecom.contact_way import ContactWayApi
from bot.clients.wecom.external_contact import ExternalContactApi
from bot.clients.wecom.group_chat import GroupChatApi
from bot.clients.wecom.group_msg import GroupMsgApi
from bot.clients.wecom.message import AgentMessageApi
from bot.clients.wecom.tags import CorpTagApi
from bot.clients.wecom.transfer import TransferApi


class WeComClient:
    """Every WeCom API group for the corp."""

    def __init__(self, agent: ApiCaller, contact: ApiCaller, agent_id: int) -> None:
        self.agent_caller = agent
        self.contact_caller = contact
        self.message = AgentMessageApi(agent, agent_id)
        self.external_contact = ExternalContactApi(contact)
        self.tags = CorpTagApi(contact)
        self.group_msg = GroupMsgApi(contact)
        self.group_chat = GroupChatApi(contact)
        self.contact_way = ContactWayApi(contact)
        self.transfer = TransferApi(contact)
