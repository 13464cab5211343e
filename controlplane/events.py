"""Sending live events through the channel layer, for every app's `events` module.

Best effort: a channel layer that is down must not turn a stored change into an error for
whoever made it, so a failed send is logged, not raised. Callers send after commit.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

log = logging.getLogger(__name__)


def send_to_groups(groups: Sequence[str], message: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return

    async def send_all() -> None:
        for group in groups:
            await layer.group_send(group, message)

    try:
        async_to_sync(send_all)()
    except Exception:
        log.exception("could not send the live event %s to %s", message["type"], groups)
