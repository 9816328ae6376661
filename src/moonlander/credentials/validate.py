"""The document checker: every entry of a kubeconfig against the allowlist, every problem
collected, and the credentials of the current context built from the validated fields.

About 450 lines on purpose: one checker walks the whole document, so every field's rule and
every cross-reference (contexts to clusters and users) is read in one place; the tables it
checks against (``fields``), addresses, YAML and PEM live in their own modules."""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from moonlander.credentials.address import _check_server_syntax, check_server
from moonlander.credentials.fields import (
    _CLUSTER_FIELDS,
    _CLUSTER_HARMLESS,
    _CONTEXT_FIELDS,
    _FORBIDDEN_CLUSTER,
    _FORBIDDEN_USER,
    _IGNORED_FIELDS,
    _TOP_LEVEL_FIELDS,
    _USER_FIELDS,
    _unknown_field,
)
from moonlander.credentials.model import _DEFAULT_POLICY, Credentials, KubeconfigError, Policy
from moonlander.credentials.pem import (
    _check_certificates,
    _check_key_pair,
    _decode_base64,
    _load_private_key,
)
from moonlander.credentials.syntax import (
    _DNS_LABEL_RE,
    _HOSTNAME_RE,
    _NUMERIC_LABEL_RE,
    _PRINTABLE_ASCII_RE,
    _q,
    _type_name,
    _unset,
)
from moonlander.credentials.yamlsafe import _load

__all__ = ["find_problems", "parse_kubeconfig"]


@dataclass(frozen=True)
class _Cluster:
    server: str
    ca_data: bytes | None
    tls_server_name: str | None
    insecure: bool


@dataclass(frozen=True)
class _User:
    token: str | None
    client_cert: bytes | None
    client_key: bytes | None


@dataclass(frozen=True)
class _Context:
    cluster: str
    user: str
    namespace: str | None


class _Checker:
    """Validates a whole document, collecting every problem (for ``moonlander check``)."""

    def __init__(self, policy: Policy, replaced: str | None = None) -> None:
        self.policy = policy
        # The cluster whose server a server override replaces: its own server is never
        # contacted, so only its syntax is checked, not the address policy.
        self.replaced = replaced
        self.problems: list[KubeconfigError] = []

    def add(self, reason: str, where: str, message: str) -> None:
        self.problems.append(KubeconfigError(f"{where}: {message}", reason=reason))

    def fields(
        self,
        body: dict[str, object],
        where: str,
        allowed: Iterable[str],
        ignored: Iterable[str],
        forbidden: dict[str, tuple[str, str]],
    ) -> None:
        """Check keys against the allowlist: forbidden keys get their specific reason."""
        accepted = frozenset(allowed) | frozenset(ignored)
        for position, (key, value) in enumerate(body.items(), start=1):
            if key in accepted:
                continue
            if key in forbidden:
                if not _unset(value):
                    reason, template = forbidden[key]
                    self.add(reason, where, template.replace("{field}", key))
                continue
            listed = ", ".join(sorted(accepted))
            unknown = _unknown_field(key, position, len(body))
            self.add("UnknownField", where, f"{unknown} (allowed: {listed})")

    def optional_str(self, body: dict[str, object], key: str, where: str) -> str | None:
        value = body.get(key)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            self.add("InvalidData", where, f"{key} must be a string, not {_type_name(value)}")
            return None
        return value

    def named_entries(
        self, doc: dict[str, object], list_key: str, body_key: str
    ) -> tuple[dict[str, dict[str, object]], set[str]]:
        """Entries of clusters/users/contexts by name (first wins), plus every name seen."""
        value = doc.get(list_key)
        entries: dict[str, dict[str, object]] = {}
        names: set[str] = set()
        if value is None:
            return entries, names
        if not isinstance(value, list):
            self.add("InvalidData", "top level", f"{list_key} must be a list")
            return entries, names
        for index, item in enumerate(value):
            where = f"{list_key}[{index}]"
            if not isinstance(item, dict):
                self.add("InvalidData", where, "must be a mapping with name and " + body_key)
                continue
            name = item.get("name")
            if not isinstance(name, str) or not name:
                self.add("InvalidData", where, "has no name")
                continue
            where = f"{body_key} {_q(name)}"
            for position, key in enumerate(item, start=1):
                if key not in ("name", body_key):
                    unknown = _unknown_field(key, position, len(item))
                    self.add("UnknownField", where, f"{unknown} next to name")
            if name in names:
                self.add(
                    "DuplicateName",
                    where,
                    f"the name is used more than once in {list_key}, so it is ambiguous",
                )
                continue
            names.add(name)
            body = item.get(body_key)
            if not isinstance(body, dict):
                self.add("InvalidData", where, f"has no {body_key} mapping")
                continue
            entries[name] = body
        return entries, names

    def cluster(self, name: str, body: dict[str, object]) -> _Cluster | None:
        where = f"cluster {_q(name)}"
        before = len(self.problems)
        self.fields(body, where, _CLUSTER_FIELDS, _CLUSTER_HARMLESS, _FORBIDDEN_CLUSTER)

        server: str | None = None
        raw_server = body.get("server")
        if raw_server is None or raw_server == "":
            self.add("InvalidServer", where, "has no server URL")
        elif not isinstance(raw_server, str):
            self.add(
                "InvalidServer", where, f"server must be a string, not {_type_name(raw_server)}"
            )
        else:
            try:
                if name == self.replaced:
                    server = _check_server_syntax(raw_server)
                else:
                    server = check_server(raw_server, self.policy)
            except KubeconfigError as err:
                self.problems.append(err._within(where))

        ca_data: bytes | None = None
        if not _unset(body.get("certificate-authority-data")):
            try:
                ca_data = _decode_base64(
                    body["certificate-authority-data"], "certificate-authority-data"
                )
                _check_certificates(ca_data, "certificate-authority-data")
            except KubeconfigError as err:
                self.problems.append(err._within(where))

        tls_server_name = self.optional_str(body, "tls-server-name", where)
        if tls_server_name is not None and not _valid_server_name(tls_server_name):
            self.add("InvalidData", where, "tls-server-name must be a DNS name or an IP address")

        insecure = body.get("insecure-skip-tls-verify")
        if insecure is None:
            insecure = False
        if not isinstance(insecure, bool):
            self.add("InvalidData", where, "insecure-skip-tls-verify must be true or false")
        elif insecure and not self.policy.allow_insecure_tls:
            self.add(
                "InsecureTLS",
                where,
                "insecure-skip-tls-verify is not allowed: without TLS verification anyone on "
                "the network path can impersonate the API server and steal the credentials",
            )
        compression = body.get("disable-compression")
        if compression is not None and not isinstance(compression, bool):
            self.add("InvalidData", where, "disable-compression must be true or false")

        if len(self.problems) != before or server is None:
            return None
        return _Cluster(server, ca_data, tls_server_name, bool(insecure))

    def user(self, name: str, body: dict[str, object]) -> _User | None:
        where = f"user {_q(name)}"
        before = len(self.problems)
        self.fields(body, where, _USER_FIELDS, ("extensions",), _FORBIDDEN_USER)
        auth_fields_rejected = len(self.problems) != before

        token = self.optional_str(body, "token", where)
        if token is not None and not _PRINTABLE_ASCII_RE.fullmatch(token):
            self.add(
                "InvalidToken",
                where,
                "token must be printable ASCII without whitespace or line breaks",
            )
            token = None

        cert = key = None
        key_object: PrivateKeyTypes | None = None
        for field in ("client-certificate-data", "client-key-data"):
            if _unset(body.get(field)):
                continue
            try:
                data = _decode_base64(body[field], field)
                if field == "client-certificate-data":
                    _check_certificates(data, field)
                    cert = data
                else:
                    key_object = _load_private_key(data, field)
                    key = data
            except KubeconfigError as err:
                self.problems.append(err._within(where))
        has_cert = not _unset(body.get("client-certificate-data"))
        has_key = not _unset(body.get("client-key-data"))
        if has_cert != has_key:
            present, missing = (
                ("client-certificate-data", "client-key-data")
                if has_cert
                else ("client-key-data", "client-certificate-data")
            )
            self.add("InvalidData", where, f"{present} is set but {missing} is not")
        elif cert is not None and key_object is not None:
            try:
                _check_key_pair(cert, key_object)
            except KubeconfigError as err:
                self.problems.append(err._within(where))

        if not auth_fields_rejected and _unset(body.get("token")) and not has_cert and not has_key:
            self.add(
                "MissingCredentials",
                where,
                "has no credentials: set token, or client-certificate-data and client-key-data",
            )
        if len(self.problems) != before:
            return None
        return _User(token, cert, key)

    def context(
        self, name: str, body: dict[str, object], clusters: set[str], users: set[str]
    ) -> _Context | None:
        where = f"context {_q(name)}"
        before = len(self.problems)
        self.fields(body, where, _CONTEXT_FIELDS, ("extensions",), {})
        cluster = self.optional_str(body, "cluster", where)
        user = self.optional_str(body, "user", where)
        namespace = self.optional_str(body, "namespace", where)
        if _unset(body.get("cluster")):
            self.add("MissingCluster", where, "does not name a cluster")
        elif cluster is not None and cluster not in clusters:
            self.add(
                "MissingCluster", where, f"refers to cluster {_q(cluster)}, which does not exist"
            )
        if _unset(body.get("user")):
            self.add("MissingUser", where, "does not name a user")
        elif user is not None and user not in users:
            self.add("MissingUser", where, f"refers to user {_q(user)}, which does not exist")
        if namespace is not None and not _DNS_LABEL_RE.fullmatch(namespace):
            self.add("InvalidData", where, "namespace must be a valid DNS label")
        if len(self.problems) != before or cluster is None or user is None:
            return None
        return _Context(cluster, user, namespace)


def _valid_server_name(name: str) -> bool:
    bare = name.removesuffix(".")
    if _HOSTNAME_RE.fullmatch(bare) and not _NUMERIC_LABEL_RE.fullmatch(bare.rpartition(".")[2]):
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return "%" not in name  # no IPv6 zone IDs


def _selected_cluster(doc: dict[str, object]) -> str | None:
    """The cluster name the current context (or the only context) names, as written; None
    when the document does not clearly say. Only a hint for :class:`_Checker`: the checks
    themselves decide whether the document is usable."""
    contexts = doc.get("contexts")
    if not isinstance(contexts, list):
        return None
    current = doc.get("current-context")
    entries = [c for c in contexts if isinstance(c, dict)]
    if current is None or current == "":
        chosen = entries if len(entries) == 1 else []
    else:
        chosen = [c for c in entries if c.get("name") == current][:1]
    if not chosen:
        return None
    body = chosen[0].get("context")
    cluster = body.get("cluster") if isinstance(body, dict) else None
    return cluster if isinstance(cluster, str) and cluster else None


def _check_override(server: str, policy: Policy) -> str:
    """A server override, checked like any server (address policy included)."""
    try:
        return check_server(server, policy)
    except KubeconfigError as err:
        raise err._within("server override") from None


def _analyse(
    doc: object, policy: Policy, *, replaced: bool = False
) -> tuple[list[KubeconfigError], Credentials | None]:
    """Problems and credentials of ``doc``. With ``replaced``, the current context's server
    is about to be replaced, so that cluster's own server is checked for syntax only."""
    if doc is None:
        return [KubeconfigError("the kubeconfig is empty", reason="NotAKubeconfig")], None
    if not isinstance(doc, dict):
        return [
            KubeconfigError(
                f"the kubeconfig must be a YAML mapping, not {_type_name(doc)}",
                reason="NotAKubeconfig",
            )
        ], None
    check = _Checker(policy, _selected_cluster(doc) if replaced else None)
    check.fields(doc, "top level", _TOP_LEVEL_FIELDS, _IGNORED_FIELDS, {})
    if not _unset(doc.get("kind")) and doc.get("kind") != "Config":
        check.add("NotAKubeconfig", "top level", 'kind must be "Config"')
    if not _unset(doc.get("apiVersion")) and doc.get("apiVersion") != "v1":
        check.add("NotAKubeconfig", "top level", 'apiVersion must be "v1"')

    cluster_bodies, cluster_names = check.named_entries(doc, "clusters", "cluster")
    user_bodies, user_names = check.named_entries(doc, "users", "user")
    context_bodies, context_names = check.named_entries(doc, "contexts", "context")
    # Every entry is validated, not just the selected one: the document as a whole must be on
    # the allowlist, and `moonlander check` reports everything at once.
    clusters = {n: check.cluster(n, b) for n, b in cluster_bodies.items()}
    users = {n: check.user(n, b) for n, b in user_bodies.items()}
    contexts = {
        n: check.context(n, b, cluster_names, user_names) for n, b in context_bodies.items()
    }

    current = doc.get("current-context")
    selected: str | None = None
    if current is None or current == "":
        if len(context_names) == 1:
            selected = next(iter(context_names))
        elif not context_names:
            check.add("NoCurrentContext", "top level", "the kubeconfig has no contexts")
        else:
            check.add(
                "AmbiguousContext",
                "top level",
                f"current-context is not set and there are {len(context_names)} contexts; "
                "set current-context to pick one",
            )
    elif not isinstance(current, str):
        check.add("InvalidData", "top level", "current-context must be a string")
    elif current not in context_names:
        check.add(
            "NoCurrentContext",
            "top level",
            f"current-context names {_q(current)}, but no context has that name",
        )
    else:
        selected = current

    if check.problems or selected is None:
        return check.problems, None
    context = contexts.get(selected)
    cluster = clusters.get(context.cluster) if context else None
    user = users.get(context.user) if context else None
    if context is None or cluster is None or user is None:  # unreachable without a problem
        return [KubeconfigError("the kubeconfig is inconsistent", reason="InvalidData")], None
    return [], Credentials(
        server=cluster.server,
        ca_data=cluster.ca_data,
        token=user.token,
        client_cert=user.client_cert,
        client_key=user.client_key,
        tls_server_name=cluster.tls_server_name,
        insecure_skip_tls_verify=cluster.insecure,
        context_name=selected,
        cluster_name=context.cluster,
        user_name=context.user,
        namespace=context.namespace,
    )


def find_problems(
    raw: bytes | str, policy: Policy = _DEFAULT_POLICY, *, server: str | None = None
) -> list[KubeconfigError]:
    """Every problem in ``raw`` (empty when it is usable). Input and YAML problems stop early
    because nothing after them can be trusted; everything else is collected.

    ``server``: as for :func:`parse_kubeconfig`; a problem with it is reported first.
    """
    problems: list[KubeconfigError] = []
    if server is not None:
        try:
            _check_override(server, policy)
        except KubeconfigError as err:
            problems.append(err)
    try:
        doc = _load(raw, policy)
    except KubeconfigError as err:
        return [*problems, err]
    return [*problems, *_analyse(doc, policy, replaced=server is not None)[0]]


def parse_kubeconfig(
    raw: bytes | str, policy: Policy = _DEFAULT_POLICY, *, server: str | None = None
) -> Credentials:
    """Validate ``raw`` and return the credentials of its current context.

    ``server`` replaces the current context's server before anything judges it, as
    ``spec.server`` does for a ChildToParent source (vcluster names ``https://localhost:8443``,
    which only works inside the vcluster's pod). The override is checked against ``policy``;
    the document's own server must still be a well-formed https URL, but it is not judged by
    the address policy, since nothing ever connects to it. Other clusters in the document
    are checked as usual.

    Raises the first :class:`KubeconfigError` that :func:`find_problems` would report.
    """
    checked = _check_override(server, policy) if server is not None else None
    doc = _load(raw, policy)
    problems, credentials = _analyse(doc, policy, replaced=checked is not None)
    if problems:
        raise problems[0]
    if credentials is None:
        raise KubeconfigError("the kubeconfig is inconsistent", reason="InvalidData")
    return credentials if checked is None else dataclasses.replace(credentials, server=checked)
