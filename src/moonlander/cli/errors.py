"""Exit codes and one-line errors of the ``moonlander`` command (kubectl's manner: no
tracebacks, the flag named as the user types it)."""

from __future__ import annotations

import enum
import re
import ssl

import httpcore2
import httpx2
from lightkube import ApiError


class Exit(enum.IntEnum):
    """Documented in docs/cli.md; scripts depend on them."""

    OK = 0
    INVALID = 1  # the input judged is unacceptable (a kubeconfig, a spec, an audience)
    USAGE = 2  # the command line is wrong
    UNREACHABLE = 3  # a file, cluster or Secret cannot be reached or read


class CliError(Exception):
    """Ends the command with ``code`` after printing ``error: <message>`` on stderr."""

    def __init__(self, code: Exit, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# moonlander.credentials and the controller speak of the Policy's fields and the Landing's
# spec; the user typed flags.
_FLAGS = {
    "set spec.kubeconfigSecretKey": "pass --key",
    "set spec.server": "pass --server",
    "allowed_networks": "--allow-network",
    "allow_loopback": "--allow-loopback",
    "allow_insecure_tls": "--allow-insecure-tls",
    "spec.kubeconfigSecretKey": "--key",
    "spec.server": "--server",
    "server override": "--server",
}
_FIELD = re.compile("|".join(rf"(?<![\w.]){re.escape(name)}(?![\w.])" for name in _FLAGS))


def as_flags(text: str) -> str:
    """``text`` with internal field names replaced by the flags that set them."""
    return _FIELD.sub(lambda m: _FLAGS[m.group(0)], text)


def one_line(text: str, limit: int = 300) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def api_error(err: ApiError, what: str) -> CliError:
    """A refusal by the API server, for ``what`` (e.g. ``Secret ns/name``)."""
    status = err.status
    code = status.code or 0
    reason = status.reason or "Error"
    hint = ""
    if code == 401:
        hint = " (the credentials are not accepted: expired or revoked token?)"
    elif code == 403:
        hint = " (RBAC: ask for get/list rights, or pass --kubeconfig/--context of another user)"
    message = one_line(status.message or "")
    return CliError(Exit.UNREACHABLE, f"{what}: {code} {reason}: {message}{hint}")


TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    httpx2.HTTPError,
    httpcore2.ConnectError,
    httpcore2.TimeoutException,
    ssl.SSLError,
    ConnectionError,
    TimeoutError,
)


def transport_error(err: BaseException, server: str) -> CliError:
    """The cluster at ``server`` could not be reached (refused, timed out, TLS)."""
    if isinstance(err, httpx2.TimeoutException | httpcore2.TimeoutException | TimeoutError):
        why = "timed out"
    elif isinstance(err, ssl.SSLError) or "CERTIFICATE_VERIFY_FAILED" in str(err):
        why = f"TLS failed ({one_line(str(err), 120)})"
    else:
        why = one_line(str(err), 160) or type(err).__name__
    return CliError(Exit.UNREACHABLE, f"cannot reach the cluster at {server}: {why}")
