"""The operator's own kubeconfig, found as kubectl finds it: ``--kubeconfig``, else
``$KUBECONFIG`` (files merged, the first definition of a name winning), else
``~/.kube/config``, else the pod's ServiceAccount; ``--context`` picks a context.

Only the operator's own file goes through lightkube's loader. Kubeconfigs read from Secrets
are tenant input and go through ``moonlander.credentials`` alone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import yaml
from lightkube import AsyncClient, ConfigError, KubeConfig
from lightkube.config.kubeconfig import SERVICE_ACCOUNT, SingleConfig
from lightkube.config.models import User

from moonlander.cli.errors import CliError, Exit, one_line

TIMEOUT = httpx2.Timeout(30.0, connect=10.0)
_LISTS = ("clusters", "contexts", "users")


@dataclass(frozen=True)
class Target:
    """Where a command talks to: one context of the operator's kubeconfig."""

    config: SingleConfig
    source: str  # the file, or "in-cluster"

    @property
    def server(self) -> str:
        return str(self.config.cluster.server)

    @property
    def namespace(self) -> str:
        """The context's namespace, ``default`` without one (as kubectl)."""
        return self.config.context.namespace or "default"

    @property
    def cluster_name(self) -> str:
        return str(self.config.context.cluster)


def kubeconfig_files(flag: Path | None, environ: Mapping[str, str], home: Path) -> list[Path]:
    """The files to read, in kubectl's order; empty means in-cluster."""
    if flag is not None:
        return [flag]
    listed = [Path(f) for f in environ.get("KUBECONFIG", "").split(os.pathsep) if f]
    if listed:
        return listed
    default = home / ".kube" / "config"
    return [default] if default.is_file() else []


def _read(path: Path, required: bool) -> dict[str, Any] | None:
    try:
        text = path.expanduser().read_text()
    except FileNotFoundError:
        if not required:
            return None  # kubectl skips missing $KUBECONFIG entries
        raise CliError(Exit.UNREACHABLE, f"{path}: no such file (--kubeconfig)") from None
    except IsADirectoryError:
        raise CliError(Exit.UNREACHABLE, f"{path}: is a directory, not a kubeconfig") from None
    except (OSError, UnicodeDecodeError) as err:
        why = err.strerror if isinstance(err, OSError) else "not UTF-8 text"
        raise CliError(Exit.UNREACHABLE, f"{path}: cannot read: {why}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise CliError(Exit.UNREACHABLE, f"{path}: not a kubeconfig: invalid YAML{where}") from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k) or [], list) for k in _LISTS):
        raise CliError(Exit.UNREACHABLE, f"{path}: not a kubeconfig (expected a Config mapping)")
    return doc


def merge(docs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """kubectl's merge: the first file to set current-context or define a name wins."""
    merged: dict[str, Any] = {k: [] for k in _LISTS}
    seen: dict[str, set[str]] = {k: set() for k in _LISTS}
    for doc in docs:
        if not merged.get("current-context") and doc.get("current-context"):
            merged["current-context"] = doc["current-context"]
        for key in _LISTS:
            for item in doc.get(key) or []:
                name = item.get("name") if isinstance(item, dict) else None
                if isinstance(name, str) and name not in seen[key]:
                    seen[key].add(name)
                    merged[key].append(item)
    return merged


def _select(config: KubeConfig, context: str | None, source: str) -> SingleConfig:
    if context is not None and context not in config.contexts:
        known = ", ".join(sorted(config.contexts)) or "none"
        raise CliError(Exit.USAGE, f"--context {context}: no such context in {source} ({known})")
    try:
        single = config.get(context)
    except ConfigError as err:
        raise CliError(Exit.UNREACHABLE, f"{source}: {one_line(str(err))}") from None
    except KeyError as err:  # a context naming a cluster or user the file lacks
        raise CliError(Exit.UNREACHABLE, f"{source}: context refers to missing {err}") from None
    if single is None:
        raise CliError(Exit.UNREACHABLE, f"{source}: no current-context; pass --context")
    if single.user is None:  # kubectl talks anonymously then; lightkube wants a user
        single = single._replace(user=User())
    return single


def load(
    flag: Path | None,
    context: str | None,
    environ: Mapping[str, str] | None = None,
    home: Path | None = None,
    service_account: Path = Path(SERVICE_ACCOUNT),
) -> Target:
    environ = os.environ if environ is None else environ
    files = kubeconfig_files(flag, environ, Path.home() if home is None else home)
    if not files:
        if not environ.get("KUBERNETES_SERVICE_HOST") or not (service_account / "token").is_file():
            raise CliError(
                Exit.UNREACHABLE,
                "no kubeconfig: pass --kubeconfig FILE or set $KUBECONFIG "
                "(~/.kube/config does not exist and this is not a pod)",
            )
        config = KubeConfig.from_service_account(service_account)
        return Target(_select(config, context, "in-cluster config"), "in-cluster")
    docs = [d for d in (_read(f, required=flag is not None) for f in files) if d is not None]
    if not docs:
        raise CliError(Exit.UNREACHABLE, f"$KUBECONFIG: none of its files exist ({files[0]}...)")
    source = str(files[0]) if len(files) == 1 else "$KUBECONFIG"
    try:
        config = KubeConfig.from_dict(merge(docs), fname=files[0])
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise CliError(Exit.UNREACHABLE, f"{source}: not a valid kubeconfig ({err})") from None
    return Target(_select(config, context, source), source)


def client(target: Target) -> AsyncClient:
    """A client for the operator's own cluster (its own TLS and auth, exec plugins included)."""
    try:
        return AsyncClient(target.config, timeout=TIMEOUT, trust_env=False)
    except (ConfigError, OSError, ValueError, AssertionError) as err:
        raise CliError(Exit.UNREACHABLE, f"{target.source}: {one_line(str(err))}") from None


def ca_data(target: Target) -> bytes | None:
    """The CA the operator's cluster entry trusts (for kubeconfigs written for it)."""
    import base64
    import binascii

    cluster = target.config.cluster
    if cluster.certificate_auth_data:
        try:
            return base64.b64decode(cluster.certificate_auth_data, validate=True)
        except (binascii.Error, ValueError):
            raise CliError(
                Exit.UNREACHABLE, f"{target.source}: certificate-authority-data is not base64"
            ) from None
    if cluster.certificate_auth:
        path = Path(cluster.certificate_auth).expanduser()
        if not path.is_absolute() and target.config.fname is not None:
            path = Path(target.config.fname).parent / path
        try:
            return path.read_bytes()
        except OSError as err:
            raise CliError(Exit.UNREACHABLE, f"{path}: cannot read: {err.strerror}") from None
    return None


def readable(
    path: Path | None, environ: Mapping[str, str], service_account: Path = Path(SERVICE_ACCOUNT)
) -> None:
    """Raises :class:`CliError` unless ``path`` (None: the pod's ServiceAccount) can be used:
    ``moonlander run`` says so in one line before it starts."""
    if path is not None:
        _read(path, required=True)
    elif not environ.get("KUBERNETES_SERVICE_HOST") or not (service_account / "token").is_file():
        raise CliError(
            Exit.UNREACHABLE,
            "no kubeconfig: pass --kubeconfig FILE or set $KUBECONFIG (this is not a pod)",
        )
