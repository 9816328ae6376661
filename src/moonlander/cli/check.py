"""``moonlander check``: the controller's kubeconfig validator, from the command line."""

from __future__ import annotations

import sys
from pathlib import Path

from moonlander.api.reasons import LandingProblem
from moonlander.controller import plan
from moonlander.credentials import (
    Credentials,
    KubeconfigError,
    Policy,
    find_problems,
    parse_kubeconfig,
)
from moonlander.kube import internals


def report(raw: bytes, policy: Policy, where: str, server: str | None = None) -> int:
    """``server``: a ChildToParent Landing's ``spec.server``, which replaces the document's
    server before the address policy judges it (vcluster's ``https://localhost:8443``)."""
    problems = find_problems(raw, policy, server=server)
    if problems:
        print(f"{where}: not usable ({len(problems)} problem{'s' * (len(problems) > 1)}):")
        for problem in problems:
            print(f"  - [{problem.reason}] {problem}")
        return 1
    creds: Credentials = parse_kubeconfig(raw, policy, server=server)
    auth = "bearer token" if creds.token else "client certificate"
    print(f"{where}: OK: server {creds.server}, context {creds.context_name!r}, {auth}")
    return 0


def check_file(path: Path, policy: Policy, server: str | None = None) -> int:
    try:
        raw = path.read_bytes()
    except OSError as err:
        print(f"{path}: cannot read: {err.strerror}", file=sys.stderr)
        return 2
    return report(raw, policy, str(path), server)


async def check_secret(
    ref: str, key: str | None, kubeconfig: Path | None, policy: Policy, server: str | None = None
) -> int:
    """Reads NAMESPACE/NAME from the cluster (the operator's own kubeconfig) and checks it."""
    from lightkube import ApiError, AsyncClient, KubeConfig
    from lightkube.resources.core_v1 import Secret

    namespace, _, name = ref.partition("/")
    if not namespace or not name:
        print("--secret takes NAMESPACE/NAME", file=sys.stderr)
        return 2
    config = KubeConfig.from_file(kubeconfig) if kubeconfig else KubeConfig.from_env()
    client = AsyncClient(config, trust_env=False)
    try:
        secret = await client.get(Secret, name, namespace=namespace)
    except ApiError as err:
        print(f"Secret {ref}: {err.status.code} {err.status.reason}", file=sys.stderr)
        return 2
    finally:
        await internals.close(client)
    data = secret.data or {}
    annotations = secret.metadata.annotations if secret.metadata else None
    try:
        used = plan.select_source_key(data, key, annotations)
        raw = plan.decode_secret_value(data, used)
    except LandingProblem as problem:
        print(f"Secret {ref}: {problem}")
        return 1
    try:
        return report(raw, policy, f"Secret {ref} key {used!r}", server)
    except KubeconfigError as err:  # find_problems said nothing, parse disagreed: report it
        print(f"Secret {ref}: {err}")
        return 1
