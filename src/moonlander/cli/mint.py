"""``moonlander mint``: the least-privilege alternative to ``argocd cluster add``."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpcore2
import httpx2
from lightkube import ApiError

from moonlander import api
from moonlander.api import ServiceAccountSpec, SpecError
from moonlander.api.reasons import LandingProblem
from moonlander.credentials import Policy
from moonlander.minting.identity import (
    ensure_identity,
    mint_token,
    prune,
    revoke,
    token_is_valid,
)
from moonlander.minting.objects import (
    ObjectRef,
)
from moonlander.minting.tokens import (
    _rfc3339,
    build_kubeconfig,
)

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# `moonlander mint`
# --------------------------------------------------------------------------------------------


def cli_owner(namespace: str, name: str) -> str:
    """Owner value of identities minted from the command line (no Landing owns them)."""
    return f"mint/{namespace}/{name}"


def parse_role_flag(text: str) -> dict[str, Any]:
    """``--role KIND/NAME@ns1,ns2`` as a ``roles`` item of the spec."""
    kind, slash, rest = text.partition("/")
    name, at, namespaces = rest.rpartition("@")
    if not kind or not slash or not at or not name:
        raise SpecError(f"--role {text[:80]!r}", "expected KIND/NAME@NAMESPACE[,NAMESPACE...]")
    return {"kind": kind, "name": name, "namespaces": [n for n in namespaces.split(",") if n]}


def _write_private(path: Path, text: str) -> None:
    """Writes ``text`` to ``path`` with mode 0600, atomically: never readable by others,
    not even for a moment, and never half-written."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", text=True)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


async def mint_command(
    *,
    admin_kubeconfig: Path,
    name: str,
    namespace: str,
    cluster_role: str | None,
    roles: Sequence[str],
    expiration: int,
    audience: str | None,
    server: str | None,
    output: Path | None,
    revoke_only: bool,
    policy: Policy,
) -> int:
    """``moonlander mint``: the least-privilege alternative to ``argocd cluster add``.

    Creates the identity in the cluster of ``admin_kubeconfig`` and prints (or writes, mode
    0600) a kubeconfig for it; ``revoke_only`` deletes the identity instead. ``roles`` are
    ``KIND/NAME@NS[,NS...]``. Exit codes: 0 done, 1 the cluster refused or failed, 2 bad input.
    """
    from moonlander.credentials import KubeconfigError, check_server, parse_kubeconfig
    from moonlander.kube.clusters import build_client, close_client

    def fail(code: int, message: str) -> int:
        print(f"error: {message}", file=sys.stderr)
        return code

    owner = cli_owner(namespace, name)
    account: ObjectRef | None = None
    spec: ServiceAccountSpec | None = None
    try:
        if revoke_only:
            if not api.DNS_SUBDOMAIN.fullmatch(name) or not api.DNS_LABEL.fullmatch(namespace):
                raise SpecError("--name/--namespace", "must be valid names")
            account = ObjectRef("ServiceAccount", name, namespace)
        else:
            raw = {
                "name": name,
                "namespace": namespace,
                "clusterRole": cluster_role,
                "roles": [parse_role_flag(r) for r in roles],
                "audience": audience,
                "expirationSeconds": expiration,
            }
            spec = api.parse_service_account(raw)
        # Checked before anything is created: --server is only written into the output.
        out_server = check_server(server, policy) if server is not None else None
    except (SpecError, KubeconfigError) as err:
        return fail(2, str(err))
    try:
        admin = parse_kubeconfig(await asyncio.to_thread(admin_kubeconfig.read_bytes), policy)
    except OSError as err:
        return fail(2, f"{admin_kubeconfig}: cannot read: {err.strerror}")
    except KubeconfigError as err:
        return fail(2, f"{admin_kubeconfig}: {err}")

    client = build_client(admin, policy)
    try:
        if account is not None:
            gone = await revoke(client, account, owner=owner)
            username = f"system:serviceaccount:{namespace}:{name}"
            print(f"revoked {username} ({len(gone)} objects deleted)", file=sys.stderr)
            return 0
        assert spec is not None
        refs = await ensure_identity(client, spec, owner=owner, owner_uid="")
        await prune(client, spec, owner=owner)  # what earlier runs granted and this one does not
        token = await mint_token(client, spec)
        if not await token_is_valid(client, token.token, spec):
            return fail(
                1,
                f"the API server does not accept tokens for audience {spec.audience!r}; "
                "pass --audience with one of its --api-audiences (usually its issuer)",
            )
        kubeconfig = build_kubeconfig(
            out_server or admin.server,
            admin.ca_data,
            token,
            policy,
            name=f"{spec.name}@{admin.cluster_name}",
        )
    except LandingProblem as problem:
        return fail(1, problem.outcome.message)
    except ApiError as err:
        return fail(1, f"{err.status.code} {err.status.reason or ''}: {err.status.message or ''}")
    except (httpx2.HTTPError, httpcore2.ConnectError, TimeoutError) as err:
        return fail(1, f"cannot reach {admin.server}: {type(err).__name__}: {err}")
    except KubeconfigError as err:
        return fail(2, str(err))
    finally:
        await close_client(client)

    if output is not None:
        try:
            _write_private(output, kubeconfig)
        except OSError as err:
            return fail(2, f"{output}: cannot write: {err.strerror}")
    else:
        sys.stdout.write(kubeconfig)
    shortened = ""
    granted = int(token.lifetime.total_seconds())
    if granted < spec.expiration_seconds:
        shortened = f" (asked for {spec.expiration_seconds}s; the API server's maximum applies)"
    print(
        f"{spec.username}: {len(refs)} objects current; token expires {_rfc3339(token.expires_at)}"
        f", lifetime {granted}s{shortened}" + (f"; written to {output}" if output else ""),
        file=sys.stderr,
    )
    return 0
