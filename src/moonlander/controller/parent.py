"""The parent kubeconfig mounted into the controller, re-read when it changes.

Mounted Secrets change by an atomic symlink swap (``..data`` -> a new timestamped
directory), so the file is checked by following the link and comparing inode, size and
mtime every ``interval`` seconds; the content is read and validated only when those change,
and Landings are woken only when the validated content really differs.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

from moonlander.api.reasons import LandingProblem, Reason, Retry
from moonlander.credentials import Credentials, KubeconfigError, Policy, parse_kubeconfig

log = logging.getLogger(__name__)


class ParentKubeconfig:
    def __init__(
        self,
        path: Path,
        policy: Policy,
        on_change: Callable[[], None],
        *,
        interval: float = 0.25,
    ) -> None:
        self.path = path
        self._policy = policy
        self._on_change = on_change
        self._interval = interval
        self._signature: tuple[int, int, int] | None = None
        self._digest: str | None = None
        self._creds: Credentials | None = None
        self._problem = f"parent kubeconfig {path} has not been read yet"

    def current(self) -> Credentials:
        """The validated parent credentials, or a problem that says why there are none."""
        if self._creds is None:
            raise LandingProblem(Reason.PARENT_KUBECONFIG_UNAVAILABLE, self._problem, Retry.BACKOFF)
        return self._creds

    def refresh(self) -> bool:
        """Re-reads the file if it changed; True when the usable content changed."""
        try:
            st = os.stat(self.path)  # follows the symlink swap of mounted Secrets
        except OSError as err:
            return self._set(None, f"parent kubeconfig {self.path}: {err.strerror}", None)
        signature = (st.st_ino, st.st_size, st.st_mtime_ns)
        if signature == self._signature:
            return False
        self._signature = signature
        try:
            raw = self.path.read_bytes()
        except OSError as err:
            return self._set(None, f"parent kubeconfig {self.path}: {err.strerror}", None)
        digest = hashlib.sha256(raw).hexdigest()
        try:
            creds = parse_kubeconfig(raw, self._policy)
        except KubeconfigError as err:
            return self._set(None, f"parent kubeconfig {self.path}: {err}", digest)
        return self._set(creds, "", digest)

    def _set(self, creds: Credentials | None, problem: str, digest: str | None) -> bool:
        changed = digest != self._digest or (creds is None) != (self._creds is None)
        self._creds, self._problem, self._digest = creds, problem, digest
        if changed:
            if problem:
                log.warning("%s", problem)
            else:
                log.info(
                    "parent kubeconfig loaded from %s (server %s)",
                    self.path,
                    creds and creds.server,
                )
        return changed

    async def watch(self) -> None:
        while True:
            if self.refresh():
                self._on_change()
            await asyncio.sleep(self._interval)
