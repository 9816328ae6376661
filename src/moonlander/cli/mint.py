"""``moonlander mint``: the least-privilege alternative to ``argocd cluster add``."""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml
from lightkube import ApiError

from moonlander import api
from moonlander.api import ServiceAccountSpec, SpecError
from moonlander.api.reasons import LandingProblem
from moonlander.cli import kubeconfig as own
from moonlander.cli.errors import (
    TRANSPORT_ERRORS,
    CliError,
    Exit,
    api_error,
    as_flags,
    transport_error,
)
from moonlander.cli.output import render
from moonlander.credentials import Policy
from moonlander.kube import internals
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
    load: Callable[[], own.Target],
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
    fmt: str = "yaml",
) -> int:
    """``moonlander mint``: the least-privilege alternative to ``argocd cluster add``.

    Creates the identity in the cluster ``load`` finds (the operator's own kubeconfig, read
    once the flags are known to be good) and
    prints (or writes, mode 0600) a kubeconfig for it, as YAML or JSON (``fmt``);
    ``revoke_only`` deletes the identity instead. ``roles`` are ``KIND/NAME@NS[,NS...]``.
    Exit codes as :class:`moonlander.cli.errors.Exit`; failures raise :class:`CliError`.
    """
    from moonlander.credentials import KubeconfigError, check_server

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
    except SpecError as err:
        raise CliError(Exit.USAGE, _flag_names(str(err))) from None
    except KubeconfigError as err:
        raise CliError(Exit.USAGE, f"--server: {as_flags(str(err))}") from None
    target = load()
    ca = own.ca_data(target)
    client = own.client(target)
    try:
        if account is not None:
            gone = await revoke(client, account, owner=owner)
            username = f"system:serviceaccount:{namespace}:{name}"
            print(f"revoked {username} ({len(gone)} objects deleted)", file=sys.stderr)
            return Exit.OK
        assert spec is not None
        refs = await ensure_identity(client, spec, owner=owner, owner_uid="")
        await prune(client, spec, owner=owner)  # what earlier runs granted and this one does not
        token = await mint_token(client, spec)
        if not await token_is_valid(client, token.token, spec):
            raise CliError(
                Exit.INVALID,
                f"the API server does not accept tokens for audience {spec.audience!r}; "
                "pass --audience with one of its --api-audiences (usually its issuer)",
            )
        kubeconfig = build_kubeconfig(
            out_server or target.server,
            ca,
            token,
            policy,
            name=f"{spec.name}@{target.cluster_name}",
        )
    except LandingProblem as problem:
        raise CliError(Exit.INVALID, as_flags(problem.outcome.message)) from None
    except ApiError as err:
        code = err.status.code or 0
        if code in (400, 409, 422):  # the API server judged what we asked for
            raise CliError(
                Exit.INVALID, f"{code} {err.status.reason or ''}: {err.status.message or ''}"
            ) from None
        raise api_error(err, f"minting {namespace}/{name}") from None
    except TRANSPORT_ERRORS as err:
        raise transport_error(err, target.server) from None
    except KubeconfigError as err:  # the cluster's own server, refused by the address policy
        raise CliError(Exit.INVALID, f"{target.server}: {as_flags(str(err))}") from None
    finally:
        await internals.close(client)

    if fmt == "json":
        kubeconfig = render(yaml.safe_load(kubeconfig), "json")
    if output is not None:
        try:
            _write_private(output, kubeconfig)
        except OSError as err:
            raise CliError(Exit.UNREACHABLE, f"{output}: cannot write: {err.strerror}") from None
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
    return Exit.OK


_SPEC_FLAGS = {
    "name": "--name",
    "namespace": "--namespace",
    "clusterRole": "--cluster-role",
    "roles": "--role",
    "expirationSeconds": "--expiration",
    "audience": "--audience",
}
_SPEC_PATH = re.compile(r"\bserviceAccount(?:\.(\w+)[^:\s]*)?")


def _flag_names(message: str) -> str:
    """``api.parse_service_account``'s field paths as the flags that set them."""
    message = message.replace(
        "grants nothing: set clusterRole, roles or rules",
        "grants nothing: pass --cluster-role or --role",
    )

    def flag(m: re.Match[str]) -> str:
        return _SPEC_FLAGS.get(m.group(1) or "", "mint")

    return _SPEC_PATH.sub(flag, message)
