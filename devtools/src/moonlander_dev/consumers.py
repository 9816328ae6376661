"""The real consumers of landed Secrets, built from ``hack/consumers`` into the cache.

Crossplane core, provider-kubernetes, Flux's controllers and a program on Argo CD's own
code are Go modules pinned under ``hack/consumers/<module>``; ``build.sh`` builds each once
into ``~/.cache/moonlander/consumers`` (``make setup`` does it ahead of time). The tests and
the Crossplane demo ask for a module's directory here; a failed build is an error, never
a reason to skip.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from moonlander_dev.clusters import ControlPlaneError, repo_root


def consumer_dir(module: str) -> Path:
    """The directory holding the binaries of ``hack/consumers/<module>`` (built if needed)."""
    root = repo_root()
    if root is None:
        raise ControlPlaneError("the consumers build from a source checkout (hack/consumers)")
    proc = subprocess.run(
        ["bash", str(root / "hack" / "consumers" / "build.sh"), module],
        capture_output=True,
        check=False,
        text=True,
    )
    if proc.returncode != 0:
        raise ControlPlaneError(
            f"hack/consumers/build.sh {module} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    for line in proc.stdout.splitlines():
        name, _, directory = line.partition(" ")
        if name == module:
            return Path(directory)
    raise ControlPlaneError(f"hack/consumers/build.sh {module} printed no directory")
