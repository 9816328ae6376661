"""The HTTP client's CPU per API request: httpcore's default (anyio) streams against
Moonlander's asyncio streams (``kube/streams.py``), on one real kube-apiserver.

Each round sends the requests a new Landing costs in a child and the parent, at the
controller's concurrency, from a client built as the controller builds a remote one
(``build_client``): create a Secret, patch it (merge, as a status patch is), and delete it.
It measures this process's CPU time (``time.process_time``: the API server is another
process), and runs the backends in alternating rounds in the same process, so the ratio
compares like with like on a noisy machine.

    python bench/client.py [--rounds 4] [--requests 600]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import CONCURRENCY, ROOT, bounded
from httpcore2._backends.anyio import AnyIOBackend
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace, Secret
from lightkube.types import PatchType

sys.path.insert(0, str(ROOT))
from moonlander.credentials import Policy, parse_kubeconfig
from moonlander.kube.clusters import build_client
from moonlander.kube.streams import AsyncioBackend
from moonlander_dev.clusters import ClusterSpec, ControlPlane

NAMESPACE = "bench-client"
POLICY = Policy(allow_loopback=True)


async def one_round(kubeconfig: str, backend: str, requests: int) -> float:
    """CPU seconds per 1000 requests for one round on a fresh client."""
    client = build_client(parse_kubeconfig(kubeconfig, POLICY), POLICY)
    pool = client._client._client._transport._inner._pool  # type: ignore[attr-defined]
    # The same streams under both, without the address guard (it only runs at connect).
    pool._network_backend = AnyIOBackend() if backend == "anyio" else AsyncioBackend()
    n = requests // 3
    names = [f"s-{backend}-{i}" for i in range(n)]
    try:
        await client.get(Namespace, NAMESPACE)  # connect before timing
        cpu = time.process_time()
        await bounded(
            [
                (
                    lambda name=name: client.create(
                        Secret(
                            metadata=ObjectMeta(name=name, namespace=NAMESPACE),
                            stringData={"kubeconfig": "x" * 2000},
                        )
                    )
                )
                for name in names
            ],
            CONCURRENCY,
        )
        await bounded(
            [
                (
                    lambda name=name: client.patch(
                        Secret,
                        name,
                        {"metadata": {"annotations": {"bench": "1"}}},
                        namespace=NAMESPACE,
                        patch_type=PatchType.MERGE,
                    )
                )
                for name in names
            ],
            CONCURRENCY,
        )
        await bounded(
            [
                (lambda name=name: client.delete(Secret, name, namespace=NAMESPACE))
                for name in names
            ],
            CONCURRENCY,
        )
        return (time.process_time() - cpu) / (3 * n) * 1000
    finally:
        await client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4, help="rounds per backend")
    parser.add_argument("--requests", type=int, default=600, help="requests per round")
    args = parser.parse_args()
    plane = ControlPlane(
        Path(tempfile.mkdtemp(prefix="moonlander-bench-client-")), [ClusterSpec("c")]
    )
    plane.start()
    try:
        kubeconfig = plane.clusters["c"].kubeconfig.read_text()

        async def setup() -> None:
            client = build_client(parse_kubeconfig(kubeconfig, POLICY), POLICY)
            await client.create(Namespace(metadata=ObjectMeta(name=NAMESPACE)))
            await client.close()

        asyncio.run(setup())
        results: dict[str, list[float]] = {"anyio": [], "asyncio": []}
        for i in range(args.rounds):
            for backend in ("anyio", "asyncio") if i % 2 == 0 else ("asyncio", "anyio"):
                results[backend].append(asyncio.run(one_round(kubeconfig, backend, args.requests)))
                print(
                    f"round {i + 1} {backend:<8} {results[backend][-1]:.2f} CPU s / 1000 requests",
                    flush=True,
                )
    finally:
        plane.stop()
    before, after = (statistics.median(results[b]) for b in ("anyio", "asyncio"))
    print(
        f"\nmedian CPU s / 1000 requests: httpcore's anyio streams {before:.2f}, "
        f"asyncio streams {after:.2f}: {after / before:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
