#!/usr/bin/env bash
# The Debian packages `make release` needs beyond hack/image/deps.sh's (buildah and friends):
# skopeo, which copies the OCI archive of hack/image/build.sh to the registry byte for byte
# (the image index keeps its digest). Installed only when missing.
set -euo pipefail

log() { echo "release-deps: $*" >&2; }
command -v skopeo >/dev/null && exit 0
[[ $(id -u) -eq 0 ]] || { log "missing skopeo: run as root, or apt-get install skopeo"; exit 1; }
log "installing skopeo"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y --no-install-recommends skopeo >&2 \
  || { apt-get update >&2 && apt-get install -y --no-install-recommends skopeo >&2; }
