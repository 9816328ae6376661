"""The validating admission webhook over HTTPS: Landings at ``/validate``, LandingSets at
``/validate-landingset`` (the paths of config/webhook and the chart), served by aiohttp
on its own port with client-certificate authentication (``serve/tls.py``)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from moonlander.serve.review import BadReview, Request, Reviewer, decode, response
from moonlander.serve.tls import ServingTLS

log = logging.getLogger(__name__)

LANDINGS_PATH = "/validate"
LANDING_SETS_PATH = "/validate-landingset"
# An AdmissionReview carries the object and its old version; etcd stores up to 1.5 MiB.
MAX_BODY = 4 * 1024 * 1024


def application(reviewer: Reviewer, tls: ServingTLS) -> web.Application:
    def handler(
        check: Callable[[Request], Awaitable[list[str]]],
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            peercert = request.transport.get_extra_info("peercert") if request.transport else None
            if not tls.client_allowed(peercert):
                return web.Response(status=403, text="client certificate not allowed\n")
            try:
                review = decode(await request.read())
            except BadReview as err:
                return web.Response(status=400, text=f"{err}\n")
            refused = await check(review)
            if refused:
                log.info(
                    "admission refused %s %s/%s by %s: %s",
                    review.operation,
                    review.namespace,
                    review.name,
                    review.user_info.username,
                    "; ".join(refused),
                )
            return web.json_response(response(review.uid, refused))

        return handle

    app = web.Application(client_max_size=MAX_BODY)
    app.add_routes(
        [
            web.post(LANDINGS_PATH, handler(reviewer.landing)),
            web.post(LANDING_SETS_PATH, handler(reviewer.landing_set)),
        ]
    )
    return app


async def serve(reviewer: Reviewer, tls: ServingTLS, *, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(application(reviewer, tls), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port, ssl_context=tls.context()).start()
    return runner
