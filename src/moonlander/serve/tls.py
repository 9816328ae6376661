"""The admission webhook's TLS: its serving certificate, and the client certificate every
caller must present (the API server's, signed by the CA the operator configures).

Only the API server may ask the webhook anything: a caller without a certificate from
``--webhook-client-ca`` is refused in the handshake, before any request is read, and with
``--webhook-client-name`` a certificate must also name that client (its common name or a
DNS name in its subjectAltName). The files are read again when they change (cert-manager
renews the serving certificate; the kubelet swaps the mounted Secret's files): each new
connection is handed the newest context, connections already open keep theirs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RELOAD_INTERVAL = 5.0


class ServingTLS:
    def __init__(self, cert_dir: Path, client_ca: Path, client_names: tuple[str, ...] = ()) -> None:
        self.cert = cert_dir / "tls.crt"
        self.key = cert_dir / "tls.key"
        self.client_ca = client_ca
        self.client_names = frozenset(client_names)
        self._seen = self._stamp()
        self._current = self._build()  # raises when the files are missing or unusable
        self._server = self._build()
        self._server.sni_callback = self._newest

    def context(self) -> ssl.SSLContext:
        """The context to listen with; every handshake switches to the newest files."""
        return self._server

    def _build(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert, self.key)
        ctx.load_verify_locations(cafile=self.client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def _newest(self, conn: ssl.SSLObject, _name: str | None, _ctx: ssl.SSLContext) -> None:
        # Called during every handshake, with or without SNI (the API server sends none to
        # an IP address).
        conn.context = self._current

    def _stamp(self) -> tuple[tuple[int, int, int], ...]:
        stamps = []
        for path in (self.cert, self.key, self.client_ca):
            try:
                st = os.stat(path)
            except OSError:
                stamps.append((0, 0, 0))
            else:
                stamps.append((st.st_mtime_ns, st.st_size, st.st_ino))
        return tuple(stamps)

    def reload_if_changed(self) -> bool:
        """Reads the files again when they changed; keeps the last good context when the new
        files do not load (half written: tried again on the next change)."""
        stamp = self._stamp()
        if stamp == self._seen:
            return False
        try:
            fresh = self._build()
        except (OSError, ssl.SSLError) as err:
            log.warning("webhook TLS files changed but do not load (%s); keeping the last", err)
            return False
        self._seen, self._current = stamp, fresh
        log.info("webhook TLS files reloaded")
        return True

    async def watch(self, interval: float = RELOAD_INTERVAL) -> None:
        while True:
            await asyncio.sleep(interval)
            self.reload_if_changed()

    def client_allowed(self, peercert: dict[str, Any] | None) -> bool:
        """Whether the verified client certificate names an allowed client (any, when no
        names are configured)."""
        if not peercert:
            return False
        if not self.client_names:
            return True
        names = {
            value
            for rdn in peercert.get("subject", ())
            for key, value in rdn
            if key == "commonName"
        }
        names.update(value for kind, value in peercert.get("subjectAltName", ()) if kind == "DNS")
        return bool(names & self.client_names)
