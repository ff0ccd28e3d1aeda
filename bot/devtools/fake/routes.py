"""Every API the fake serves: (platform, api path) → route, gathered from the API groups."""

from __future__ import annotations

from bot.devtools.fake import (
    auth,
    oa_assets,
    oa_mass,
    oa_messages,
    oa_users,
    wecom_api,
    wecom_contacts,
    wecom_groups,
    wecom_tags,
    wecom_transfer,
)
from bot.devtools.fake.common import Route

ROUTES: dict[tuple[str, str], Route] = {
    **auth.ROUTES,
    **oa_users.ROUTES,
    **oa_messages.ROUTES,
    **oa_mass.ROUTES,
    **oa_assets.ROUTES,
    **wecom_api.ROUTES,
    **wecom_contacts.ROUTES,
    **wecom_tags.ROUTES,
    **wecom_groups.ROUTES,
    **wecom_transfer.ROUTES,
}
