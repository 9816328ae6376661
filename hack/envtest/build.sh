#!/usr/bin/env bash
# Build the control-plane binaries (kube-apiserver, kube-controller-manager, etcd, kubectl,
# helm) and the kubelet of the dev node (devtools/src/moonlander_dev/node.py) from the Go modules
# pinned in this directory, into a cache outside the work tree.
#
#   build.sh              builds every binary (make setup, make test, the e2e suite)
#   build.sh BINARY...    builds only those, e.g. `build.sh kube-apiserver etcd kubectl`
#                         (make demo: the local clusters need nothing else)
# Either way each binary is built only if it is missing from the one cached directory, so a
# subset and the full build share their results; the directory's key covers the pins, this
# script and the Go toolchain, so a change to any of them builds into a new directory.
#
# Prints the directory holding the binaries (envtest's KUBEBUILDER_ASSETS layout) on stdout,
# and one "envtest: built <binary> in <n>s" line per binary built on stderr.
# If KUBEBUILDER_ASSETS is set and holds kube-apiserver, etcd and kubectl (or the binaries
# named), that directory is used and nothing is built (the dev node also needs kubelet and
# kube-controller-manager there).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
all=(kube-apiserver etcd kubectl kube-controller-manager kubelet helm)
log() { echo "envtest: $*" >&2; }

wanted=("$@")
for b in "${wanted[@]}"; do
  [[ " ${all[*]} " == *" $b "* ]] || { log "unknown binary $b (one of: ${all[*]})"; exit 2; }
done

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
  required=("${wanted[@]}")
  [[ ${#required[@]} -gt 0 ]] || required=(kube-apiserver etcd kubectl)
  for b in "${required[@]}"; do
    [[ -x "$KUBEBUILDER_ASSETS/$b" ]] || { log "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS has no executable $b"; exit 1; }
  done
  echo "$KUBEBUILDER_ASSETS"
  exit 0
fi
[[ ${#wanted[@]} -gt 0 ]] || wanted=("${all[@]}")

pin() { # go.mod, module path: the pinned version, from a one-line or block require
  sed -n "s#^\(require\)\{0,1\}[[:space:]]*$2 \(v[0-9][0-9.]*\).*#\2#p" "$1" | head -n 1
}
k8s_version=$(pin "$here/k8s/go.mod" k8s.io/kubernetes)
etcd_version=$(pin "$here/k8s/go.mod" go.etcd.io/etcd/server/v3)
helm_version=$(pin "$here/helm/go.mod" helm.sh/helm/v3)
for v in k8s_version etcd_version helm_version; do
  [[ -n "${!v}" ]] || { log "cannot read $v from go.mod"; exit 1; }
done
# The key covers the pins and the Go toolchain, so a change to either rebuilds.
key=$(cat "$here/k8s/go.sum" "$here/helm/go.sum" "$here/build.sh" <(go env GOVERSION GOARCH) | sha256sum | cut -c1-12)
cache_root=${MOONLANDER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/moonlander}
out="$cache_root/envtest/k8s-$k8s_version-etcd-$etcd_version-helm-$helm_version-$key"

missing() { # the wanted binaries not yet in $out (each appears there only once fully built)
  local b
  for b in "${wanted[@]}"; do [[ -x "$out/$b" ]] || echo "$b"; done
}

if [[ -z "$(missing)" ]]; then
  echo "$out"
  exit 0
fi

mkdir -p "$out"
# One build at a time per output directory: concurrent callers (test sessions, make setup,
# make demo) wait for it, then build only what is still missing.
exec 9>"$out.lock"
flock 9
todo=$(missing)
if [[ -z "$todo" ]]; then
  echo "$out"
  exit 0
fi
start=$(date +%s)
export CGO_ENABLED=0

major=${k8s_version#v}; major=${major%%.*}
minor=${k8s_version#v*.}; minor=${minor%%.*}
vpkgs=(k8s.io/component-base/version k8s.io/client-go/pkg/version)
ldflags="-s -w"
for p in "${vpkgs[@]}"; do
  ldflags+=" -X $p.gitVersion=$k8s_version -X $p.gitMajor=$major -X $p.gitMinor=$minor"
  ldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done

build() { # dir, output name, package, ldflags
  local t0=$SECONDS
  log "building $2 ($3)"
  (cd "$here/$1" && go build -trimpath -ldflags "$4" -o "$out/$2.tmp" "$3")
  mv "$out/$2.tmp" "$out/$2"
  log "built $2 in $(( SECONDS - t0 ))s"
}

for b in $todo; do
  case "$b" in
    kube-apiserver) build k8s kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$ldflags" ;;
    etcd) build k8s etcd go.etcd.io/etcd/server/v3 "-s -w" ;;
    kubectl) build k8s kubectl k8s.io/kubernetes/cmd/kubectl "$ldflags" ;;
    kube-controller-manager) build k8s kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager "$ldflags" ;;
    kubelet) build k8s kubelet k8s.io/kubernetes/cmd/kubelet "$ldflags" ;;
    helm) build helm helm helm.sh/helm/v3/cmd/helm "-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version" ;;
  esac
done

log "built $(echo $todo) into $out in $(( $(date +%s) - start ))s"
echo "$out"
