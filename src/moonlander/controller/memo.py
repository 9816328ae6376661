"""Memoised credential work (pure functions of their arguments).

A fleet shares what it lands: a thousand ParentToChild Landings render the same parent
credential, Landings of one tenant cluster parse the same source, and every re-reconcile of
a converged Landing would otherwise parse and render it all again. The results depend only
on the arguments — the kubeconfig bytes, the address policy, the server override, the
name — so they are kept, a bounded number of them, least recently used first out. Errors
are never kept: an invalid source is judged again each time.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from functools import lru_cache

from moonlander.credentials import Credentials, Policy, parse_kubeconfig, render_kubeconfig

SIZE = 1024

_parsed: OrderedDict[tuple[bytes, Policy, str | None], Credentials] = OrderedDict()


def parsed(raw: bytes, policy: Policy, server: str | None = None) -> Credentials:
    """:func:`parse_kubeconfig`, kept by the digest of ``raw`` (not the bytes themselves)."""
    key = (hashlib.sha256(raw).digest(), policy, server)
    found = _parsed.get(key)
    if found is not None:
        _parsed.move_to_end(key)
        return found
    creds = parse_kubeconfig(raw, policy, server=server)
    _parsed[key] = creds
    if len(_parsed) > SIZE:
        _parsed.popitem(last=False)
    return creds


@lru_cache(maxsize=SIZE)
def with_server(creds: Credentials, server: str, policy: Policy) -> Credentials:
    """``creds.with_server(server, policy)``."""
    return creds.with_server(server, policy)


@lru_cache(maxsize=SIZE)
def rendered(creds: Credentials, name: str) -> str:
    """:func:`render_kubeconfig` of ``creds`` under ``name``."""
    return render_kubeconfig(creds, name=name)
