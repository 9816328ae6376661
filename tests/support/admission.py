"""The shipped MutatingAdmissionPolicy (config/admission), installed as an operator would,
for the e2e suite and the benchmark: both run Moonlander as it is installed."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import yaml
from lightkube import ApiError, AsyncClient
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.admissionregistration_v1 import (
    MutatingAdmissionPolicy,
    MutatingAdmissionPolicyBinding,
)

from moonlander import api
from moonlander.kube.resources import LandingResource

SOURCE = Path(__file__).resolve().parents[2] / "config" / "admission" / "landing-finalizer.yaml"


async def install_finalizer_policy(client: AsyncClient, probe_namespace: str) -> None:
    """Applies config/admission/landing-finalizer.yaml and waits until the API server uses
    it: a server-side dry-run create of a Landing in ``probe_namespace`` (which must exist)
    comes back with the finalizer."""
    kinds = {
        "MutatingAdmissionPolicy": MutatingAdmissionPolicy,
        "MutatingAdmissionPolicyBinding": MutatingAdmissionPolicyBinding,
    }
    for doc in yaml.safe_load_all(SOURCE.read_text()):
        await client.apply(kinds[doc["kind"]].from_dict(doc), field_manager="tests", force=True)
    probe = LandingResource(
        metadata=ObjectMeta(name="admission-probe", namespace=probe_namespace), spec={}
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            created = await client.create(probe, dry_run=True)
        except ApiError as err:  # a CRD just established may not be served for a moment
            if err.status.code not in (404, 503):
                raise
        else:
            if api.FINALIZER in (created.metadata.finalizers or []):
                return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{SOURCE.name} applied, but a new Landing still gets no finalizer")
