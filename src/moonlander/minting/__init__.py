"""Least-privilege credentials: mint a ServiceAccount identity, issue short-lived tokens for
it, renew them, revoke them.

Instead of handing out an admin kubeconfig, Moonlander creates a ServiceAccount in the
cluster whose access is handed out, binds exactly the roles the Landing asks for, and lands
a kubeconfig holding a token from the TokenRequest API (never a legacy token Secret). The
token is renewed before it expires; deleting the ServiceAccount invalidates every token
issued for it at once, which is how access is revoked.

Every object this module writes carries Moonlander's ownership marks (the managed-by label
and the owning Landing's annotation). An object without them is never modified or deleted,
whatever its name; deletes are made conditional on the object's uid and resourceVersion so
that an object replaced or edited meanwhile is re-examined first.

Tokens never appear in logs, exceptions or reprs. API errors from requests that carried a
token (TokenReview) are replaced by messages built from the status code alone.
"""

from moonlander.minting.identity import (
    ensure_identity,
    mint_token,
    prune,
    revoke,
    token_is_valid,
)
from moonlander.minting.objects import RBAC_GROUP, ObjectRef, desired_objects, is_current
from moonlander.minting.tokens import (
    MintedToken,
    build_kubeconfig,
    token_service_account_uid,
    token_times,
)

__all__ = [
    "RBAC_GROUP",
    "MintedToken",
    "ObjectRef",
    "build_kubeconfig",
    "desired_objects",
    "ensure_identity",
    "is_current",
    "mint_token",
    "prune",
    "revoke",
    "token_is_valid",
    "token_service_account_uid",
    "token_times",
]
