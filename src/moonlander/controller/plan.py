"""The reconcile decision, without I/O: what to write, whether it is ours, what status to say.

The reconcile's steps (``controller/steps``) gather the facts (source Secret, parent
kubeconfig, what is in the target cluster) and ask this module what to do; everything here
is testable without a cluster. Ownership marks, adoption and ``is_current`` are
``api.ownership``'s, for every kind Moonlander writes.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import re
from collections.abc import Mapping
from typing import Any

from moonlander import api
from moonlander.api import ownership as own
from moonlander.api.reasons import LandingProblem, Reason, Retry
from moonlander.credentials import (
    Credentials,
    KubeconfigError,
    Policy,
    check_server,
    credentials_from_token,
)

KAMAJI_KEY_ANNOTATION = "kamaji.clastix.io/kubeconfig-secret-key"


def select_source_key(
    data: Mapping[str, Any], wanted: str | None, annotations: Mapping[str, str] | None = None
) -> str:
    """The key of the source Secret holding the kubeconfig.

    An explicit ``kubeconfigSecretKey`` wins; then Kamaji's key-selecting annotation; then
    the first of ``api.DEFAULT_SOURCE_KEYS`` present.
    """
    if wanted is not None:
        if wanted in data:
            return wanted
        raise LandingProblem(
            Reason.SOURCE_KEY_NOT_FOUND,
            f"source Secret has no key {wanted!r} (keys: {', '.join(sorted(data)) or 'none'})",
            Retry.ON_CHANGE,
        )
    hinted = (annotations or {}).get(KAMAJI_KEY_ANNOTATION)
    if hinted and hinted in data:
        return hinted
    for key in api.DEFAULT_SOURCE_KEYS:
        if key in data:
            return key
    raise LandingProblem(
        Reason.SOURCE_KEY_NOT_FOUND,
        f"source Secret has none of the keys {', '.join(api.DEFAULT_SOURCE_KEYS)} "
        f"(keys: {', '.join(sorted(data)) or 'none'}); set spec.kubeconfigSecretKey",
        Retry.ON_CHANGE,
    )


def decode_secret_value(data: Mapping[str, Any], key: str) -> bytes:
    value = data.get(key)
    if not isinstance(value, str):
        raise LandingProblem(Reason.SOURCE_KEY_NOT_FOUND, f"key {key!r} is empty", Retry.ON_CHANGE)
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        raise LandingProblem(
            Reason.INVALID_KUBECONFIG, f"key {key!r} is not valid base64", Retry.ON_CHANGE
        ) from None


def content_hash(kubeconfig: str) -> str:
    return "sha256:" + hashlib.sha256(kubeconfig.encode()).hexdigest()


def desired_secret(
    *,
    name: str,
    namespace: str,
    owner: str,
    owner_uid: str,
    kubeconfig: str,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The landed Secret, as sent with server-side apply: keys ``kubeconfig`` and ``value``
    hold the raw kubeconfig YAML once (the API's base64 is the only encoding)."""
    encoded = base64.b64encode(kubeconfig.encode()).decode()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": own.managed_labels(),
            "annotations": {
                **own.owner_annotations(owner, owner_uid, content_hash(kubeconfig)),
                **(annotations or {}),
            },
        },
        "type": "Opaque",
        "data": dict.fromkeys(api.WRITTEN_KEYS, encoded),
    }


# One comparison and one adoption rule for everything Moonlander writes (api.ownership).
is_current = own.is_current
check_adoptable = own.check_adoptable


def type_change_needed(existing: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    """A Secret's type is immutable: an adopted Secret of another type is replaced."""
    return bool(existing.get("type", "Opaque") != desired["type"])


def check_cross_namespace(
    landing_namespace: str,
    source_namespace: str,
    source_name: str,
    source_annotations: Mapping[str, str] | None,
    *,
    allow_all: bool,
) -> None:
    """A Secret in another namespace is used only with that namespace's consent: an
    annotation on the Secret naming the Landing's namespace (or ``*``), or an operator flag."""
    if source_namespace == landing_namespace or allow_all:
        return
    if grants(source_annotations, landing_namespace):
        return
    raise cross_namespace_refusal(landing_namespace, source_namespace, source_name)


def grants(annotations: Mapping[str, str] | None, namespace: str) -> bool:
    """True when a Secret's annotations grant ``namespace`` its use."""
    granted = (annotations or {}).get(api.ALLOWED_NAMESPACES_ANNOTATION, "")
    allowed = {n.strip() for n in granted.split(",") if n.strip()}
    return "*" in allowed or namespace in allowed


def cross_namespace_refusal(
    landing_namespace: str, source_namespace: str, source_name: str
) -> LandingProblem:
    """The one answer for a source in another namespace that may not be used, whether or not
    it exists: a tenant learns nothing about namespaces it cannot read."""
    return LandingProblem(
        Reason.CROSS_NAMESPACE_NOT_ALLOWED,
        f"Secret {source_namespace}/{source_name} is in another namespace and does not exist "
        f"or does not grant namespace {landing_namespace!r} (annotation "
        f"{api.ALLOWED_NAMESPACES_ANNOTATION})",
        Retry.ON_CHANGE,
    )


# --------------------------------------------------------------------------------------------
# Producers without a kubeconfig: a bearer token and a CA (OCM managed-serviceaccount, the
# classic kubernetes.io/service-account-token Secret)
# --------------------------------------------------------------------------------------------

TOKEN_KEY = "token"  # noqa: S105 - a key name
CA_KEY = "ca.crt"
NAMESPACE_KEY = "namespace"
# Keys that mean "this Secret holds a kubeconfig": the default search plus Kamaji's in-cluster
# variants, which are only ever picked explicitly (kubeconfigSecretKey or Kamaji's annotation).
KUBECONFIG_KEYS = (*api.DEFAULT_SOURCE_KEYS, "admin.svc", "super-admin.svc")
_NAMESPACE_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def is_token_secret(data: Mapping[str, Any]) -> bool:
    """True for a Secret holding a bare token: ``token`` and ``ca.crt`` and no kubeconfig
    key. Such Secrets carry no server address; ``spec.server`` must supply it."""
    return TOKEN_KEY in data and CA_KEY in data and not any(k in data for k in KUBECONFIG_KEYS)


def credentials_from_token_secret(
    data: Mapping[str, Any], server: str | None, policy: Policy
) -> Credentials:
    """Credentials from a token Secret's ``data`` (base64 values, as read from the API).

    ``server`` is the Landing's ``spec.server``: neither OCM nor the classic token Secret
    says where the API server is. ``ca.crt`` is PEM; without it the system roots verify the
    server. The classic Secret's ``namespace`` becomes the kubeconfig's default namespace,
    as it is for a pod using that ServiceAccount.
    """
    if not server:
        raise LandingProblem(
            Reason.SOURCE_KEY_NOT_FOUND,
            "source Secret holds a token and ca.crt but no kubeconfig and no server address; "
            "set spec.server",
            Retry.ON_CHANGE,
        )
    try:
        server = check_server(server, policy)
    except KubeconfigError as err:
        raise LandingProblem(Reason.INVALID_SPEC, f"spec.server: {err}", Retry.ON_CHANGE) from None
    if TOKEN_KEY not in data:
        raise LandingProblem(
            Reason.SOURCE_KEY_NOT_FOUND,
            f"source Secret has no key {TOKEN_KEY!r} (keys: {', '.join(sorted(data)) or 'none'})",
            Retry.ON_CHANGE,
        )
    try:
        token = decode_secret_value(data, TOKEN_KEY).decode("ascii")
    except UnicodeDecodeError:
        raise LandingProblem(
            Reason.INVALID_KUBECONFIG, f"key {TOKEN_KEY!r} is not ASCII", Retry.ON_CHANGE
        ) from None
    ca = decode_secret_value(data, CA_KEY) if data.get(CA_KEY) else None
    namespace = None
    if data.get(NAMESPACE_KEY):
        raw_ns = decode_secret_value(data, NAMESPACE_KEY).decode("utf-8", "replace").strip()
        if not _NAMESPACE_NAME.fullmatch(raw_ns):
            raise LandingProblem(
                Reason.INVALID_KUBECONFIG,
                f"key {NAMESPACE_KEY!r} is not a valid namespace name",
                Retry.ON_CHANGE,
            )
        namespace = raw_ns
    try:
        creds = credentials_from_token(server, ca, token, policy)
    except KubeconfigError as err:
        raise LandingProblem(
            Reason.INVALID_KUBECONFIG, f"token Secret: {err}", Retry.ON_CHANGE
        ) from None
    return dataclasses.replace(creds, namespace=namespace)
