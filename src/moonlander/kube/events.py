"""Kubernetes Events on a Landing's transitions, posted without blocking the reconcile."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import secrets
from collections.abc import Callable

from lightkube import AsyncClient
from lightkube.models.core_v1 import EventSource, ObjectReference
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Event

from moonlander import api

log = logging.getLogger(__name__)


class EventRecorder:
    def __init__(
        self,
        client: AsyncClient,
        component: str = "moonlander",
        on_posted: Callable[[], None] | None = None,
    ) -> None:
        self._client = client
        self._component = component
        self._on_posted = on_posted  # counts each Event written (moonlander_writes_total)
        self._tasks: set[asyncio.Task[None]] = set()

    def record(
        self,
        landing: api.ObjectMeta,
        type_: str,
        reason: str,
        message: str,
        kind: str = api.KIND,
    ) -> None:
        """Posts an Event about the object ``landing`` (its metadata; a Landing unless
        ``kind`` says otherwise)."""
        now = dt.datetime.now(dt.UTC)
        event = Event(
            metadata=ObjectMeta(
                name=f"{landing.name}.{secrets.token_hex(8)}", namespace=landing.namespace
            ),
            involvedObject=ObjectReference(
                apiVersion=api.API_VERSION,
                kind=kind,
                name=landing.name,
                namespace=landing.namespace,
                uid=landing.uid or None,
                resourceVersion=landing.resource_version or None,
            ),
            type=type_,
            reason=reason,
            message=message[:1024],
            source=EventSource(component=self._component),
            reportingComponent=self._component,
            firstTimestamp=now,
            lastTimestamp=now,
            count=1,
        )
        log.info("%s: %s %s: %s", landing.key, type_, reason, message)
        task = asyncio.create_task(self._post(event))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(self, event: Event) -> None:
        try:
            await self._client.create(event)
        except Exception as err:  # events are best effort; never fail a reconcile over one
            log.debug("event not recorded: %s", type(err).__name__)
            return
        if self._on_posted is not None:
            self._on_posted()

    async def flush(self) -> None:
        for task in list(self._tasks):
            with contextlib.suppress(Exception):
                await task
