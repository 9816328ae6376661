"""The controller's own list-watch (``kube/watch.py``) against a real API server: paged
lists, the events a watch brings, and a relist that reports what was deleted while no watch
was open. An expired resourceVersion (410 Gone) is played in tests/e2e/test_faults.py, where
etcd is compacted under every watch of the controller."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

import httpx2
from lightkube import AsyncClient
from lightkube.resources.core_v1 import Secret
from lightkube.types import PatchType

from moonlander.kube.resources import LANDINGS
from moonlander.kube.sources import secret_metadata_watch
from moonlander.kube.watch import ListWatch, http_of

from .conftest import Env
from .harness import eventually, landing, secret_with


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, Mapping[str, Any]]] = []

    def __call__(self, event_type: str, obj: Mapping[str, Any]) -> None:
        self.seen.append((event_type, obj))

    def names(self, event_type: str) -> list[str]:
        return sorted(
            str((obj.get("metadata") or obj).get("name"))
            for kind, obj in self.seen
            if kind == event_type
        )


@contextlib.contextmanager
def counting_gets(client: AsyncClient, path: str) -> Any:
    """Counts the GET requests the client sends for ``path``."""
    http = http_of(client)
    sent: list[httpx2.Request] = []

    async def hook(request: httpx2.Request) -> None:
        if request.method == "GET" and request.url.path == path:
            sent.append(request)

    http.event_hooks["request"].append(hook)
    try:
        yield sent
    finally:
        http.event_hooks["request"].remove(hook)


async def test_a_paged_list_reports_all_and_a_relist_reports_what_went(
    env: Env, namespace: str
) -> None:
    local = env.local
    names = [f"s-{i}" for i in range(5)]
    for name in names:
        await local.create(secret_with(namespace, name, {"k": "v"}, labels={"set": "a"}))
    events = Events()
    watch = secret_metadata_watch(local, events, (namespace,))
    watch._page = 2  # five Secrets: three pages
    with counting_gets(local, f"/api/v1/namespaces/{namespace}/secrets") as sent:
        version = await watch.list(namespace)
    assert len(sent) == 3
    assert [r.url.params.get("limit") for r in sent] == ["2", "2", "2"]
    assert all("continue" in r.url.params for r in sent[1:])
    assert events.names("ADDED") == names
    assert watch.ready.is_set()
    assert int(version) > 0
    # Metadata only: a Secret's data never reaches the handler.
    assert all(set(meta) >= {"name", "namespace", "labels"} for _, meta in events.seen)
    assert not any("data" in meta for _, meta in events.seen)

    # Deleted and created while no watch is open: the relist reports both.
    await local.delete(Secret, "s-1", namespace=namespace)
    await local.delete(Secret, "s-3", namespace=namespace)
    await local.create(secret_with(namespace, "s-5", {"k": "v"}))
    events.seen.clear()
    await watch.list(namespace)
    assert events.names("DELETED") == ["s-1", "s-3"]
    assert events.names("ADDED") == ["s-0", "s-2", "s-4", "s-5"]
    gone = [meta for kind, meta in events.seen if kind == "DELETED"]
    assert all(m["namespace"] == namespace and m["labels"] == {"set": "a"} for m in gone)


async def test_the_watch_brings_each_change_and_ready_waits_for_the_list(
    env: Env, namespace: str
) -> None:
    local = env.local
    events = Events()
    watch = ListWatch(local, LANDINGS, events, (namespace,))
    assert not watch.ready.is_set()
    task = asyncio.create_task(watch.run())
    try:
        await asyncio.wait_for(watch.ready.wait(), 10)
        assert events.seen == []  # nothing there yet
        # No controller owns this namespace's Landings; the watch sees them all the same.
        created = await local.create(landing(namespace, "w-1", kubeconfigSecretName="nothing"))
        await local.patch(
            type(created),
            "w-1",
            {"metadata": {"labels": {"x": "y"}}},
            namespace=namespace,
            patch_type=PatchType.MERGE,
        )

        def labelled() -> list[Mapping[str, Any]]:
            return [
                obj
                for kind, obj in events.seen
                if kind == "MODIFIED" and obj["metadata"].get("labels") == {"x": "y"}
            ]

        async def modified() -> bool:
            return bool(labelled())

        await eventually(modified, timeout=10)
        added = [obj for kind, obj in events.seen if kind == "ADDED"]
        assert [a["metadata"]["name"] for a in added] == ["w-1"]
        # The whole object, spec included, as the API server sent it.
        assert added[0]["spec"]["kubeconfigSecretName"] == "nothing"
        assert labelled()[0]["metadata"]["namespace"] == namespace
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
