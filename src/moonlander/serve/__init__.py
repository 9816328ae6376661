"""HTTP served by the controller process: health and readiness, metrics, and the admission
webhook's checks."""
