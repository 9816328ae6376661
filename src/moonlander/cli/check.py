"""``moonlander check``: the controller's kubeconfig validator, from the command line.

The kubeconfig judged (a file, stdin or a Secret's value) is tenant input: it goes through
``moonlander.credentials`` alone. Only the operator's own kubeconfig, used to read the
Secret, is loaded as kubectl loads it (:mod:`moonlander.cli.kubeconfig`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from lightkube import ApiError

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
from moonlander.controller import plan
from moonlander.credentials import KubeconfigError, Policy, find_problems, parse_kubeconfig
from moonlander.kube import internals


def judge(raw: bytes, policy: Policy, where: str, server: str | None = None) -> dict[str, Any]:
    """The verdict on ``raw`` as plain data (the ``-o json|yaml`` document). ``server``: a
    ChildToParent Landing's ``spec.server``, which replaces the document's server before the
    address policy judges it (vcluster's ``https://localhost:8443``)."""
    problems = find_problems(raw, policy, server=server)
    if not problems:
        try:
            creds = parse_kubeconfig(raw, policy, server=server)
        except KubeconfigError as err:  # find_problems said nothing, parse disagreed
            problems = [err]
        else:
            return {
                "source": where,
                "usable": True,
                "problems": [],
                "server": creds.server,
                "context": creds.context_name,
                "auth": "bearer token" if creds.token else "client certificate",
            }
    return {
        "source": where,
        "usable": False,
        "problems": [{"reason": p.reason, "message": as_flags(str(p))} for p in problems],
    }


def text(verdict: dict[str, Any]) -> str:
    where = verdict["source"]
    if verdict["usable"]:
        return (
            f"{where}: OK: server {verdict['server']}, context {verdict['context']!r}, "
            f"{verdict['auth']}\n"
        )
    problems = verdict["problems"]
    lines = [f"{where}: not usable ({len(problems)} problem{'s' * (len(problems) > 1)}):"]
    lines += [f"  - [{p['reason']}] {p['message']}" for p in problems]
    return "\n".join(lines) + "\n"


def report(
    raw: bytes, policy: Policy, where: str, server: str | None = None, fmt: str | None = None
) -> int:
    verdict = judge(raw, policy, where, server)
    sys.stdout.write(render(verdict, fmt) if fmt else text(verdict))
    return Exit.OK if verdict["usable"] else Exit.INVALID


def read_file(path: Path) -> bytes:
    if str(path) == "-":
        return sys.stdin.buffer.read()
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CliError(Exit.UNREACHABLE, f"{path}: no such file") from None
    except IsADirectoryError:
        raise CliError(Exit.UNREACHABLE, f"{path}: is a directory, not a kubeconfig") from None
    except OSError as err:
        raise CliError(Exit.UNREACHABLE, f"{path}: cannot read: {err.strerror}") from None


def secret_ref(ref: str, namespace: str | None) -> tuple[str, str]:
    """``--secret NAMESPACE/NAME``, or ``--secret NAME`` with ``-n`` (else the context's)."""
    ns, slash, name = ref.rpartition("/")
    if not slash:
        return namespace or "", ref
    if not ns or not name or "/" in ns:
        raise CliError(Exit.USAGE, f"--secret {ref!r}: expected NAME or NAMESPACE/NAME")
    if namespace is not None and namespace != ns:
        raise CliError(Exit.USAGE, f"--secret {ref} names namespace {ns}, -n says {namespace}")
    return ns, name


async def read_secret(
    target: own.Target, namespace: str, name: str, key: str | None
) -> tuple[bytes, str]:
    """The kubeconfig bytes held by the Secret and the key they came from."""
    from lightkube.resources.core_v1 import Secret

    client = own.client(target)
    try:
        secret = await client.get(Secret, name, namespace=namespace)
    except ApiError as err:
        raise api_error(err, f"Secret {namespace}/{name}") from None
    except TRANSPORT_ERRORS as err:
        raise transport_error(err, target.server) from None
    finally:
        await internals.close(client)
    data = secret.data or {}
    annotations = secret.metadata.annotations if secret.metadata else None
    try:
        used = plan.select_source_key(data, key, annotations)
        return plan.decode_secret_value(data, used), used
    except LandingProblem as problem:
        flag = " (--key)" if key else ""
        message = as_flags(str(problem))
        raise CliError(Exit.INVALID, f"Secret {namespace}/{name}: {message}{flag}") from None
