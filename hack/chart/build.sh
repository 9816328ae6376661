#!/usr/bin/env bash
# Build the chart's tools (promtool for the PrometheusRule's unit tests, helm-docs for the
# chart README) from the Go modules pinned under this directory, into a cache outside the
# work tree: the pattern of hack/consumers/build.sh.
#
# Each subdirectory is one Go module with a `targets` file: "<binary> <package> [tags]" per
# line (tags: comma-separated Go build tags, e.g. promtool's remove_all_sd, which leaves out
# every service-discovery plugin that promtool test rules does not use).
#   build.sh            builds every module; prints "<module> <dir>" per module
#   build.sh MODULE...  builds those; prints the same lines
# Re-running is a no-op when the cached binaries match go.mod, go.sum, targets, this script
# and the Go toolchain.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache_root=${MOONLANDER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/moonlander}
log() { echo "chart-tools: $*" >&2; }

modules=("$@")
if [[ ${#modules[@]} -eq 0 ]]; then
  for d in "$here"/*/; do
    [[ -f "$d/targets" ]] && modules+=("$(basename "$d")")
  done
fi

export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod
goversion=$(go env GOVERSION)

for m in "${modules[@]}"; do
  dir="$here/$m"
  [[ -f "$dir/targets" && -f "$dir/go.mod" ]] || { log "no module $m (go.mod and targets) in $here"; exit 1; }
  key=$(cd "$dir" && cat go.mod go.sum targets "$here/build.sh" <(echo "$goversion"; go env GOARCH) | sha256sum | cut -c1-12)
  out="$cache_root/chart-tools/$m-$key"
  if [[ ! -f "$out/.complete" ]]; then
    mkdir -p "$out"
    start=$(date +%s)
    while read -r name pkg tags; do
      [[ -z "$name" || "$name" == \#* ]] && continue
      log "building $m/$name ($pkg${tags:+, tags $tags}) with $goversion"
      (cd "$dir" && go build -trimpath -ldflags "-s -w" ${tags:+-tags "$tags"} -o "$out/$name.tmp" "$pkg")
      mv "$out/$name.tmp" "$out/$name"
    done < "$dir/targets"
    touch "$out/.complete"
    log "built $m into $out in $(( $(date +%s) - start ))s"
  fi
  echo "$m $out"
done
