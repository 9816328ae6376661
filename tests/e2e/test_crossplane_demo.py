"""`moonlander-dev demo --crossplane` end to end: the seed's Phase 3 success metric ("resource
created in remote vcluster via Crossplane composition"), with Crossplane core v2 in harvey
composing through what Moonlander landed (Pattern A to talos-root, Pattern B to a vcluster).

The demo builds Crossplane, provider-kubernetes and the function the first time (several
minutes on two cores; `make setup` does it ahead of time). A failed build or a process that
dies fails the demo, so this test fails; it never skips.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]


def _processes_using(directory: Path) -> list[str]:
    """Processes whose command line or environment names ``directory`` (every process the
    demo starts does: kubeconfigs, certificates and logs live there)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            text = (proc / "cmdline").read_bytes() + (proc / "environ").read_bytes()
        except OSError:
            continue
        if os.fsencode(directory) in text:
            found.append(f"{proc.name}: {(proc / 'cmdline').read_bytes()[:200]!r}")
    return found


def test_crossplane_demo_composes_in_talos_root_and_the_vcluster(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "moonlander_dev", "demo", "--crossplane", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=1700,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    # Both Landings, both XRs, each ConfigMap read back where it belongs, then deleted.
    assert "Pattern A landed" in out and "Pattern B landed" in out, out
    assert "both XRs Ready" in out, out
    assert "talos-root: ConfigMap default/hello-talos-root exists" in out, out
    assert "vcluster: ConfigMap default/hello-vcluster exists" in out, out
    assert "both ConfigMaps gone from talos-root and vcluster" in out, out
    assert "success in" in out, out
    # Every process it started is gone: clusters, Crossplane, provider, function, GC, both
    # Moonlanders.
    assert not (tmp_path / "clusters" / "ready").exists()
    assert not _processes_using(tmp_path), _processes_using(tmp_path)
