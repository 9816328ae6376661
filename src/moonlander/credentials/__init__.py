"""Parse, validate and render tenant-supplied kubeconfigs.

Every kubeconfig is treated as hostile: tenants write them and the controller then connects
with them. A kubeconfig can make a client library run programs (``exec``, ``auth-provider``),
read controller files (``tokenFile``, ``certificate-authority``...), proxy traffic, impersonate
other identities or reach cloud metadata endpoints. So this package never hands the document to
a client loader; it reads the YAML itself, accepts only an allowlist of fields, and produces a
small :class:`Credentials` value that is rendered back into a minimal kubeconfig.

The package is pure: no network, no subprocesses and no file access, in every module. Error
messages never contain secret material (tokens, keys, certificate data, passwords): at most
field names, (truncated) context/cluster/user names and the server URL without user info, path
or query. A key that is not a kubeconfig field client-go knows is never echoed, since it may be
a token pasted in the wrong place.

The modules follow the order in which a document is read, so each can be reviewed on its own:

- :mod:`.model`: the public types (:class:`KubeconfigError`, :class:`Policy`,
  :class:`Credentials`);
- :mod:`.yamlsafe`: raw bytes to plain data, through the YAML parser's event stream;
- :mod:`.fields`: the allowlists, the refused fields with their reasons, and field naming;
- :mod:`.address`: the server address policy, also used at connect time by ``clusters``;
- :mod:`.pem`: base64, certificates and private keys;
- :mod:`.validate`: the document checker and the entry points :func:`find_problems` and
  :func:`parse_kubeconfig`;
- :mod:`.render`: :func:`render_kubeconfig` and :func:`credentials_from_token`;
- :mod:`.syntax`: name syntax and message quoting shared by the others.

The address policy and the YAML reader are the two parts with their own threat (SSRF, parser
tricks) and their own tests; the checker only combines them with the field tables.
"""

from __future__ import annotations

from moonlander.credentials.address import check_address, check_server
from moonlander.credentials.model import Credentials, KubeconfigError, Policy
from moonlander.credentials.render import credentials_from_token, render_kubeconfig
from moonlander.credentials.validate import find_problems, parse_kubeconfig

__all__ = [
    "Credentials",
    "KubeconfigError",
    "Policy",
    "check_address",
    "check_server",
    "credentials_from_token",
    "find_problems",
    "parse_kubeconfig",
    "render_kubeconfig",
]
