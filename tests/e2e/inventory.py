"""SIG Multicluster's Cluster Inventory API (ClusterProfile, KEP-4322) for the e2e tests.

The ClusterProfile CRD is not committed: ``go mod download`` fetches the pinned module through
the Go module proxy into the module cache (a no-op once cached, checked against the checksum
database) and the CRD is read from the extracted module directory.

The pin is the exact pseudo-version that ``sigs.k8s.io/kueue`` v0.17.0's go.mod requires (the
module publishes no tagged versions), so the CRD the tests install is the one Kueue's
MultiKueue reads. It is pinned here and nowhere else; ``test_clusterprofile`` checks it against
Kueue's go.mod.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.consumers import ConsumerError, Module, required_version

CLUSTER_INVENTORY_API = Module(
    "sigs.k8s.io/cluster-inventory-api", "v0.0.0-20251028164203-2e3fabb46733"
)
# The consumer whose go.mod the pin above is taken from.
KUEUE = Module("sigs.k8s.io/kueue", "v0.17.0")
# The module's config/crd/bases also holds an empty "_.yaml" (group ""): only this one is real.
CLUSTER_PROFILE_CRD = "config/crd/bases/multicluster.x-k8s.io_clusterprofiles.yaml"
CLUSTER_PROFILE_CRD_NAME = "clusterprofiles.multicluster.x-k8s.io"


def _go_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env["GOTOOLCHAIN"] = "local"  # we only read files: never fetch a toolchain for them
    return env


@functools.cache
def module_dir(module: Module = CLUSTER_INVENTORY_API) -> Path:
    """The extracted, checksum-verified module directory in the Go module cache."""
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
    directory = info.get("Dir")
    if proc.returncode != 0 or info.get("Error") or not directory or not info.get("Sum"):
        raise ConsumerError(f"go mod download {module}: {info.get('Error') or 'no Dir'}")
    return Path(directory)


def crd_paths() -> list[Path]:
    """The ClusterProfile CRD YAML file(s) of the pinned module, for ``kubectl apply -f``."""
    path = module_dir() / CLUSTER_PROFILE_CRD
    if not path.is_file():
        raise ConsumerError(f"{CLUSTER_INVENTORY_API}: no {CLUSTER_PROFILE_CRD}")
    return [path]


def crd() -> dict[str, Any]:
    """The ClusterProfile CustomResourceDefinition, ready to create."""
    doc: dict[str, Any] = yaml.safe_load(crd_paths()[0].read_text())
    if doc.get("kind") != "CustomResourceDefinition":
        raise ConsumerError(f"{CLUSTER_PROFILE_CRD} is not a CRD")
    doc.pop("status", None)
    doc["metadata"].pop("creationTimestamp", None)
    return doc


def kueue_required_version() -> str:
    """The cluster-inventory-api version Kueue's go.mod requires (to check the pin)."""
    return required_version(KUEUE, CLUSTER_INVENTORY_API.path)
