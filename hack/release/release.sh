#!/usr/bin/env bash
# `make release REGISTRY=host[:port][/prefix] VERSION=x.y.z`: the multi-arch image index and the
# Helm chart pushed to any OCI registry, both signed with cosign, and an SBOM attached.
#
#   REGISTRY         where to push: the image goes to $REGISTRY/moonlander:$VERSION, the chart
#                    to oci://$REGISTRY/charts (so $REGISTRY/charts/moonlander:$VERSION)
#   VERSION          the release's version; must be pyproject.toml's version, or that version
#                    with a pre-release suffix (0.2.0-rc.1): the image says what it is
#   COSIGN_KEY       the operator's cosign private key (a file from `cosign generate-key-pair`,
#                    or any key reference cosign takes, e.g. env://COSIGN_PRIVATE_KEY)
#   COSIGN_PASSWORD  its password (read by cosign itself)
#   REGISTRY_CA      optional: a CA file the registry's TLS certificate is checked against, by
#                    every tool (skopeo, cosign, syft, helm)
#   RELEASE_OUT      output directory, default _out/release: the SBOMs, the chart package and
#                    release.env (the digests, for scripts)
#
# Signatures are key-based with no transparency log upload (--tlog-upload=false): nothing is
# sent to sigstore's public services. They are stored as cosign stores them by default (the
# sha256-<digest>.sig tag). The SBOMs (SPDX JSON, one per architecture, made by syft from the
# pushed image) are attached to the image index as OCI 1.1 referrers (`cosign attach sbom`:
# a manifest whose subject is the index; a registry without the referrers API gets the
# referrers tag schema, sha256-<hex>) and also signed as in-toto attestations
# (`cosign attest --type spdxjson`), which `cosign verify-attestation --key` checks.
#
# Registry credentials are whatever each tool already has (skopeo/cosign: the Docker config or
# REGISTRY_AUTH_FILE; helm: `helm registry login`); see docs/release.md.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
log() { echo "release: $*" >&2; }
die() { log "$*"; exit 1; }

: "${REGISTRY:?REGISTRY=host[:port][/prefix] is required}"
: "${VERSION:?VERSION=x.y.z is required}"
: "${COSIGN_KEY:?COSIGN_KEY (the cosign private key) is required}"
[[ -v COSIGN_PASSWORD ]] || die "COSIGN_PASSWORD is not set (empty for a key without one)"
REGISTRY=${REGISTRY%/}
[[ "$REGISTRY" != *://* ]] || die "REGISTRY is host[:port][/prefix], without a scheme"
[[ "$VERSION" =~ ^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]] || die "VERSION $VERSION is not x.y.z[-pre]"
src_version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/pyproject.toml" | head -n 1)
[[ "$VERSION" == "$src_version" || "$VERSION" == "$src_version"-* ]] \
  || die "VERSION $VERSION is not this checkout's version $src_version (pyproject.toml)"
if [[ -n "${REGISTRY_CA:-}" ]]; then
  [[ -f "$REGISTRY_CA" ]] || die "REGISTRY_CA $REGISTRY_CA is not a file"
  REGISTRY_CA=$(cd "$(dirname "$REGISTRY_CA")" && pwd)/$(basename "$REGISTRY_CA")
fi
out=${RELEASE_OUT:-$root/_out/release}
mkdir -p "$out"
out=$(cd "$out" && pwd)
image=$REGISTRY/moonlander
chart_repo=$REGISTRY/charts
started=$(date +%s)

# --- tools --------------------------------------------------------------------------------
bash "$here/deps.sh"
declare -A tool
while read -r m dir; do tool[$m]=$dir/$m; done < <(bash "$here/tools/build.sh" cosign syft)
cosign=${tool[cosign]} syft=${tool[syft]}
helm=$(bash "$root/hack/envtest/build.sh" helm)/helm

# Each tool's way of trusting the registry's CA.
skopeo_tls=() cosign_tls=() helm_tls=()
if [[ -n "${REGISTRY_CA:-}" ]]; then
  certs=$out/certs.d # skopeo reads every *.crt in a directory as a CA
  mkdir -p "$certs"
  cp "$REGISTRY_CA" "$certs/ca.crt"
  skopeo_tls=(--dest-cert-dir "$certs")
  cosign_tls=(--registry-cacert "$REGISTRY_CA")
  helm_tls=(--ca-file "$REGISTRY_CA")
  export SYFT_REGISTRY_CA_CERT=$REGISTRY_CA
fi
# skopeo's own policy: copying our own archive needs no signature check of its source.
policy=$out/policy.json
echo '{"default":[{"type":"insecureAcceptAnything"}]}' >"$policy"

# --- the image index ----------------------------------------------------------------------
log "building the image index (hack/image/build.sh)"
t0=$(date +%s)
IMAGE_OUT=$out/image bash "$root/hack/image/build.sh" >&2
image_took=$(( $(date +%s) - t0 ))
archive=$out/image/moonlander-$src_version.oci.tar
[[ -f "$archive" ]] || die "no $archive"
log "pushing $image:$VERSION"
skopeo --policy "$policy" copy --all --preserve-digests --quiet "${skopeo_tls[@]}" \
  "oci-archive:$archive:$src_version" "docker://$image:$VERSION"
# The digest of the index as the registry serves it (the archive's, preserved).
digest=$(python3 - "$archive" <<'EOF'
import json, sys, tarfile
with tarfile.open(sys.argv[1]) as t:
    print(json.loads(t.extractfile("index.json").read())["manifests"][0]["digest"])
EOF
)
served=$(skopeo inspect --raw "${skopeo_tls[@]/--dest-cert-dir/--cert-dir}" "docker://$image@$digest" | sha256sum | cut -d' ' -f1)
[[ "sha256:$served" == "$digest" ]] || die "the registry serves $image@$digest as sha256:$served"
log "signing $image@$digest"
"$cosign" sign --yes --key "$COSIGN_KEY" --tlog-upload=false "${cosign_tls[@]}" \
  -a "org.opencontainers.image.version=$VERSION" "$image@$digest" >&2

# --- the SBOMs ----------------------------------------------------------------------------
read -r -a arches <<<"${IMAGE_ARCHES:-amd64 arm64}"
counts=()
for arch in "${arches[@]}"; do
  sbom=$out/sbom-linux-$arch.spdx.json
  log "SBOM of $image@$digest for linux/$arch (syft)"
  "$syft" "registry:$image@$digest" --platform "linux/$arch" -o "spdx-json=$sbom" >&2
  # The packages found, less the image itself (the package the document DESCRIBES).
  n=$(python3 - "$sbom" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
rels = doc["relationships"]
described = {r["relatedSpdxElement"] for r in rels if r["relationshipType"] == "DESCRIBES"}
print(sum(p["SPDXID"] not in described for p in doc["packages"]))
EOF
)
  counts+=("linux/$arch $n")
  # The referrer (artifactType application/vnd.dev.cosign.artifact.sbom.v1+json, subject the
  # index) and a signed attestation of the same document.
  COSIGN_EXPERIMENTAL=1 "$cosign" attach sbom --sbom "$sbom" --type spdx --input-format json \
    --registry-referrers-mode oci-1-1 "${cosign_tls[@]}" "$image@$digest" >&2
  "$cosign" attest --yes --key "$COSIGN_KEY" --tlog-upload=false --type spdxjson \
    --predicate "$sbom" "${cosign_tls[@]}" "$image@$digest" >&2
done

# --- the chart ----------------------------------------------------------------------------
# A copy of charts/moonlander whose defaults are this release: the image by the digest just
# signed, in this registry; version and appVersion from helm package.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -rL "$root/charts/moonlander" "$work/moonlander" # the chart links files from config/
python3 - "$work/moonlander" "$image" "$digest" "$VERSION" <<'EOF'
import re, sys
from pathlib import Path
chart, image, digest, version = Path(sys.argv[1]), *sys.argv[2:]
values = chart / "values.yaml"
text = values.read_text()
# The top-level image: block's own repository and digest lines (indented two spaces).
block = re.search(r"(?m)^image:\n(?:(?:  .*|\s*)\n)+", text)
assert block, "no image: block in values.yaml"
new, n = re.subn(r"(?m)^  repository: .*$", f"  repository: {image}", block.group(0), count=1)
new, m = re.subn(r'(?m)^  digest: .*$', f'  digest: "{digest}"', new, count=1)
assert n == m == 1, "values.yaml image block has no repository or digest line"
values.write_text(text[: block.start()] + new + text[block.end():])
meta = chart / "Chart.yaml"
text = meta.read_text()
text = re.sub(r"(?m)^(\s+image: ).*/moonlander:\S+$", rf"\g<1>{image}:{version}@{digest}", text)
meta.write_text(text)
EOF
"$helm" package "$work/moonlander" --version "$VERSION" --app-version "$VERSION" \
  --destination "$out" >&2
package=$out/moonlander-$VERSION.tgz
log "pushing $package to oci://$chart_repo"
pushed=$("$helm" push "$package" "oci://$chart_repo" "${helm_tls[@]}" 2>&1) || die "helm push: $pushed"
echo "$pushed" >&2
chart_digest=$(sed -n 's/^Digest: \(sha256:[0-9a-f]*\)$/\1/p' <<<"$pushed")
[[ -n "$chart_digest" ]] || die "helm push printed no digest"
log "signing $chart_repo/moonlander@$chart_digest"
"$cosign" sign --yes --key "$COSIGN_KEY" --tlog-upload=false "${cosign_tls[@]}" \
  -a "org.opencontainers.image.version=$VERSION" "$chart_repo/moonlander@$chart_digest" >&2

# --- summary ------------------------------------------------------------------------------
{
  echo "IMAGE=$image"
  echo "IMAGE_DIGEST=$digest"
  echo "CHART=oci://$chart_repo/moonlander"
  echo "CHART_DIGEST=$chart_digest"
  echo "VERSION=$VERSION"
  for c in "${counts[@]}"; do
    a=${c%% *}; a=${a#linux/}
    echo "SBOM_PACKAGES_${a^^}=${c#* }"
  done
} >"$out/release.env"
echo "image index: $image:$VERSION@$digest"
echo "chart:       oci://$chart_repo/moonlander:$VERSION@$chart_digest"
for c in "${counts[@]}"; do echo "SBOM:        ${c#* } packages (${c%% *}, SPDX JSON)"; done
echo "released $VERSION to $REGISTRY in $(( $(date +%s) - started ))s (the image build ${image_took}s)"
