"""Step, last: write what the reconcile found to the Landing's status (when it changed)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from moonlander.api import InvalidLanding, LandedStatus, Landing
from moonlander.api.reasons import Outcome, Reason
from moonlander.controller.conditions import now_rfc3339
from moonlander.controller.status import StatusUpdate, next_status
from moonlander.controller.store import Store


class StatusWriter:
    def __init__(self, store: Store) -> None:
        self.store = store
        # Asked before a routine status write (still Synced, new content): True when the
        # loop will run this Landing again later to write it, so that other Landings'
        # landed Secrets go first (loop.Controller.defer_status).
        self.defer: Callable[[str], bool] = lambda _key: False

    async def write(
        self,
        landing: Landing | InvalidLanding,
        outcome: Outcome,
        landed: LandedStatus | None,
        *,
        not_before: float | None = None,
        revoked: bool = False,
    ) -> None:
        """Writes the status (and the Event of a transition) when it changed; with
        ``not_before`` (monotonic time), no sooner; ``revoked`` (or NotPermitted) with
        ``landed`` None: what was landed is gone."""
        meta = landing.metadata

        def decide() -> StatusUpdate | None:
            return next_status(
                landing.status,
                outcome=outcome,
                generation=meta.generation,
                target=landing.target if isinstance(landing, Landing) else None,
                landed=landed,
                now=now_rfc3339(),
                revoked=(revoked or outcome.reason is Reason.NOT_PERMITTED) and landed is None,
            )

        update = decide()
        if update is None:
            return  # nothing changed: nothing is written
        if not_before is not None and time.monotonic() < not_before:
            await asyncio.sleep(not_before - time.monotonic())
            update = decide()  # its times as of now, not as of the failure
            if update is None:
                return
        routine = update.event is None and outcome.ready and landing.status.landed is not None
        if routine and self.defer(landing.key):
            return  # written when the loop comes back to it, after the Landings waiting now
        if update.event is not None:
            self.store.event(meta, *update.event)
        await self.store.patch_status(meta, update.status)
