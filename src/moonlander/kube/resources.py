"""lightkube resources for Moonlander's own kinds (generic: no generated models)."""

from __future__ import annotations

from typing import Any

from lightkube.generic_resource import create_global_resource, create_namespaced_resource

from moonlander import api

LandingResource: Any = create_namespaced_resource(api.GROUP, api.VERSION, api.KIND, api.PLURAL)
LandingPolicyResource: Any = create_global_resource(
    api.GROUP, api.VERSION, "LandingPolicy", "landingpolicies"
)
LandingSetResource: Any = create_namespaced_resource(
    api.GROUP, api.VERSION, "LandingSet", "landingsets"
)
