"""HTTP endpoints: ``/healthz`` and ``/readyz`` on the health port, ``/metrics`` on the
metrics port (one port may serve both). With ``auth`` (``--metrics-auth``), ``/metrics``
answers only callers the API server authenticates and allows (serve/metrics_auth.py); the
probes stay open to the kubelet."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from moonlander.controller.metrics import Metrics
from moonlander.serve.metrics_auth import MetricsAuth


class Probes:
    """Named readiness checks; ready when every one holds."""

    def __init__(self) -> None:
        self._checks: dict[str, Callable[[], bool]] = {}
        self.alive: Callable[[], bool] = lambda: True

    def add(self, name: str, check: Callable[[], bool]) -> None:
        self._checks[name] = check

    def failing(self) -> list[str]:
        return [name for name, check in self._checks.items() if not check()]


async def serve(
    probes: Probes,
    metrics: Metrics,
    *,
    health_port: int | None,
    metrics_port: int | None,
    host: str,
    auth: MetricsAuth | None = None,
) -> web.AppRunner | None:
    async def healthz(_request: web.Request) -> web.Response:
        if probes.alive():
            return web.Response(text="ok\n")
        return web.Response(status=500, text="unhealthy\n")

    async def readyz(_request: web.Request) -> web.Response:
        failing = probes.failing()
        if failing:
            return web.Response(status=503, text="not ready: " + ", ".join(failing) + "\n")
        return web.Response(text="ok\n")

    async def metrics_handler(request: web.Request) -> web.Response:
        if auth is not None:
            verdict = await auth.check(request.headers.get("Authorization"))
            if verdict.status != 200:
                return web.Response(status=verdict.status, text=verdict.text)
        body = generate_latest(metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    if health_port is None and metrics_port is None:
        return None
    app = web.Application()
    if health_port is not None:
        app.add_routes([web.get("/healthz", healthz), web.get("/readyz", readyz)])
    if metrics_port is not None:
        app.add_routes([web.get("/metrics", metrics_handler)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    for port in {p for p in (health_port, metrics_port) if p is not None}:
        await web.TCPSite(runner, host, port).start()
    return runner
