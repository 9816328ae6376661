"""The consumers' published schemas, fetched at test time from their Go modules.

Nothing of theirs is committed: ``go mod download`` fetches each pinned module through the
Go module proxy into the normal module cache (GOMODCACHE; a no-op once cached), checks it
against the checksum database, and the files are read straight from the module ``.zip``.
The versions are pinned here and nowhere else.

A module that needs a newer Go than the one installed still downloads and verifies: ``go``
then reports an ``Error`` about the Go version in its JSON but names the ``.zip``. We only
read files from it, so that error is ignored, and the zip's ``h1:`` hash is recomputed here
and compared with the verified ``Sum`` ``go`` reported.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import re
import subprocess
import tempfile
import zipfile
from dataclasses import dataclass
from typing import Any

import yaml


@dataclass(frozen=True)
class Module:
    path: str
    version: str

    def __str__(self) -> str:
        return f"{self.path}@{self.version}"


# The pins. provider-helm is not served by the module proxy here (403), so its ProviderConfig
# shape is checked only in the unit tests, against its documented CRDs.
PROVIDER_KUBERNETES = Module("github.com/crossplane-contrib/provider-kubernetes", "v1.4.1")
# Cluster API: the Cluster CRD a LandingSet's clusterAPI generator reads (Kamaji's module is
# not served by the proxy here, so there is no Kamaji generator to test against).
CLUSTER_API = Module("sigs.k8s.io/cluster-api", "v1.14.2")
CLUSTER_API_CLUSTER_CRD = "core/config/crd/bases/cluster.x-k8s.io_clusters.yaml"
FLUX_KUSTOMIZE_CONTROLLER = Module("github.com/fluxcd/kustomize-controller", "v1.10.1")
ARGO_CD = Module("github.com/argoproj/argo-cd/v3", "v3.6.1")
# Flux's kubeconfig Secret reader lives in fluxcd/pkg/runtime; its version is the one
# kustomize-controller requires (read from the zip's go.mod), not a second pin.
FLUX_RUNTIME = "github.com/fluxcd/pkg/runtime"


class ConsumerError(AssertionError):
    pass


def _go_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    # Never fetch a Go toolchain to satisfy a module's "go" line: we only read files.
    env["GOTOOLCHAIN"] = "local"
    return env


def _h1(archive: zipfile.ZipFile) -> str:
    """Go's dirhash "h1:" of a module zip (golang.org/x/mod/sumdb/dirhash.Hash1)."""
    lines = []
    for name in sorted(archive.namelist()):
        digest = hashlib.sha256(archive.read(name)).hexdigest()
        lines.append(f"{digest}  {name}\n")
    return "h1:" + base64.b64encode(hashlib.sha256("".join(lines).encode()).digest()).decode()


@functools.cache
def module_zip(module: Module | str) -> zipfile.ZipFile:
    """The module's zip from the module cache, downloading and verifying it if needed."""
    with tempfile.TemporaryDirectory() as outside_any_module:
        proc = subprocess.run(
            ["go", "mod", "download", "-json", str(module)],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=outside_any_module,
            env=_go_env(),
            check=False,
        )
    try:
        info: dict[str, Any] = json.loads(proc.stdout)
    except ValueError:
        raise ConsumerError(
            f"go mod download {module} failed ({proc.returncode}): {proc.stderr[-2000:]}"
        ) from None
    path, verified = info.get("Zip"), info.get("Sum")
    if not path or not verified or not os.path.exists(path):
        raise ConsumerError(f"go mod download {module}: no verified zip: {info.get('Error')}")
    archive = zipfile.ZipFile(path)
    if _h1(archive) != verified:
        raise ConsumerError(f"{module}: zip does not match its verified checksum {verified}")
    return archive


def _prefix(module: Module | str) -> str:
    return f"{module}/"


def read_text(module: Module | str, path: str) -> str:
    return module_zip(module).read(_prefix(module) + path).decode()


def crds(module: Module, directory: str) -> dict[str, dict[str, Any]]:
    """Every CustomResourceDefinition in ``directory`` of the module, by name."""
    archive = module_zip(module)
    base = _prefix(module) + directory.rstrip("/") + "/"
    found: dict[str, dict[str, Any]] = {}
    for name in archive.namelist():
        if not name.startswith(base) or not name.endswith((".yaml", ".yml")):
            continue
        for doc in yaml.safe_load_all(archive.read(name)):
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                doc.pop("status", None)
                doc["metadata"].pop("creationTimestamp", None)
                found[doc["metadata"]["name"]] = doc
    if not found:
        raise ConsumerError(f"{module}: no CRDs under {directory}")
    return found


def required_version(module: Module, dependency: str) -> str:
    """The version of ``dependency`` that ``module``'s go.mod requires."""
    gomod = read_text(module, "go.mod")
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(dependency)}\s+(v\S+)", gomod, re.M)
    if match is None:
        raise ConsumerError(f"{module} does not require {dependency}")
    return match.group(1)


def go_struct_json_tags(source: str, struct: str) -> dict[str, tuple[str, bool]]:
    """The JSON names of a Go struct's fields: name -> (Go type, omitempty)."""
    match = re.search(rf"^type {re.escape(struct)} struct \{{\n(.*?)^\}}", source, re.M | re.S)
    if match is None:
        raise ConsumerError(f"struct {struct} not found")
    tags: dict[str, tuple[str, bool]] = {}
    for line in match.group(1).splitlines():
        field = re.match(r'\s*(?:(\w+)\s+)?([\w.*\[\]]+)\s+`[^`]*json:"([^"]*)"', line)
        if field is None:
            continue
        go_type = field.group(2)
        name, *options = field.group(3).split(",")
        if name and name != "-":
            tags[name] = (go_type, "omitempty" in options)
    return tags
