"""Moonlander's own kinds: lightkube resources (generic: no generated models), and the
collections its watches follow."""

from __future__ import annotations

from typing import Any

from lightkube.generic_resource import create_global_resource, create_namespaced_resource

from moonlander import api
from moonlander.api import landingset
from moonlander.kube.watch import Collection, namespaced

LandingResource: Any = create_namespaced_resource(api.GROUP, api.VERSION, api.KIND, api.PLURAL)
LandingPolicyResource: Any = create_global_resource(
    api.GROUP, api.VERSION, "LandingPolicy", "landingpolicies"
)
LandingSetResource: Any = create_namespaced_resource(
    api.GROUP, api.VERSION, landingset.KIND, landingset.PLURAL
)

_OWN = f"/apis/{api.GROUP}/{api.VERSION}"
LANDINGS = Collection("Landing", namespaced(_OWN, api.PLURAL))
LANDING_SETS = Collection("LandingSet", namespaced(_OWN, landingset.PLURAL))
