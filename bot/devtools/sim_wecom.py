"""The simulator's WeCom 客户联系 commands: play what WeCom sends when staff act."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from bot.devtools import sim_events as ev

if TYPE_CHECKING:
    from bot.devtools.simulator import Simulator

_CHANGE = {
    "/edit-customer": "edit_external_contact",
    "/del-customer": "del_external_contact",
    "/del-follow": "del_follow_user",
}


class _Args(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        from bot.devtools.simulator import SimulatorError

        raise SimulatorError(message)


def _add_parser() -> _Args:
    parser = _Args(prog="/add-customer", add_help=False)
    parser.add_argument("external_userid")
    parser.add_argument("--state", default="")
    parser.add_argument("--half", action="store_true")
    parser.add_argument("--name", default="")
    parser.add_argument("--remark", default="")
    parser.add_argument("--unionid", default="")
    return parser


async def contact_event(sim: Simulator, name: str, args: list[str]) -> str:
    """The plaintext body for one WeCom command line."""
    from bot.devtools.simulator import SimulatorError

    wecom = sim.settings.wecom
    if wecom is None:
        raise SimulatorError("the settings have no [wecom] section")
    staff, now = sim.who.staff, sim.now()
    if name == "/add-customer":
        opts = _add_parser().parse_args(args)
        # The platform must know the customer for externalcontact/get to describe them.
        follow = {"userid": staff, "remark": opts.remark, "state": opts.state, "add_way": 1}
        customer = {"external_userid": opts.external_userid, "follow_user": [follow]}
        customer |= {"name": opts.name or opts.external_userid, "unionid": opts.unionid}
        await sim.control("customers", customer)
        minted = await sim.control(
            "welcome_code", {"userid": staff, "external_userid": opts.external_userid}
        )
        change = "add_half_external_contact" if opts.half else "add_external_contact"
        extra = (("State", opts.state), ("WelcomeCode", str(minted.get("welcome_code", ""))))
        return ev.wecom_contact_event(
            wecom.corp_id, change, staff, opts.external_userid, now, *extra
        )
    if name in _CHANGE and args:
        source = (("Source", "DELETE_BY_TRANSFER"),) if name == "/del-customer" else ()
        return ev.wecom_contact_event(wecom.corp_id, _CHANGE[name], staff, args[0], now, *source)
    raise SimulatorError(f"unknown WeCom command or missing argument: {name} (try /help)")
