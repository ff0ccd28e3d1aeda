"""Agent messages: https://developer.work.weixin.qq.com/document/path/90236"""

from __future__ import annotations

from typing import Any

from bot.clients.caller import ApiCaller


class AgentMessageApi:
    """Messages from the self-built app to staff."""

    def __init__(self, caller: ApiCaller, agent_id: int) -> None:
        self.caller = caller
        self.agent_id = agent_id

    async def send_text(self, userid: str, content: str) -> dict[str, Any]:
        """POST cgi-bin/message/send (text)."""
        body = {
            "touser": userid,
            "msgtype": "text",
            "agentid": self.agent_id,
            "text": {"content": content},
        }
        return await self.caller.call("POST", "cgi-bin/message/send", json=body)
