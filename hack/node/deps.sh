#!/usr/bin/env bash
# The host packages the dev node (devtools/src/moonlander_dev/node.py: `moonlander-dev dev-clusters up
# --node`) needs, from Debian, installed only when missing: containerd (with ctr), runc, the
# CNI plugins (bridge, host-local, loopback, portmap in /usr/lib/cni), iptables, conntrack,
# iproute2, and mount/nsenter. The kubelet and kube-controller-manager come from
# hack/envtest/build.sh. Nothing is started or configured here: the packages' own services
# are not used (the node runs its own containerd with private state; see docs/install.md),
# and a containerd service that the package starts is stopped and disabled again when it
# was not installed before.
set -euo pipefail

log() { echo "node-deps: $*" >&2; }

# a file each package provides -> the package
declare -A pkg=(
  [/usr/bin/containerd]=containerd
  [/usr/bin/ctr]=containerd
  [/usr/sbin/runc]=runc
  [/usr/lib/cni/bridge]=containernetworking-plugins
  [/usr/lib/cni/host-local]=containernetworking-plugins
  [/usr/lib/cni/loopback]=containernetworking-plugins
  [/usr/sbin/iptables]=iptables
  [/usr/sbin/conntrack]=conntrack
  [/usr/sbin/ip]=iproute2
  [/usr/bin/nsenter]=util-linux
  [/usr/bin/mount]=mount
)
missing=()
for f in "${!pkg[@]}"; do
  [[ -x "$f" ]] || missing+=("${pkg[$f]}")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)

[[ $(id -u) -eq 0 ]] || { log "missing ${missing[*]}: run as root, or apt-get install them"; exit 1; }
log "installing ${missing[*]}"
had_containerd_unit=0
[[ -e /lib/systemd/system/containerd.service ]] && had_containerd_unit=1
export DEBIAN_FRONTEND=noninteractive
# No service may start during the install: the node starts its own containerd.
policy=/usr/sbin/policy-rc.d
made_policy=0
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  made_policy=1
fi
restore() { [[ $made_policy == 1 ]] && rm -f "$policy"; return 0; }
trap restore EXIT
apt-get install -y --no-install-recommends "${missing[@]}" >&2 \
  || { apt-get update >&2 && apt-get install -y --no-install-recommends "${missing[@]}" >&2; }
# The package enables its service (and starts it where systemd runs): the node never uses it.
if [[ $had_containerd_unit == 0 && -e /lib/systemd/system/containerd.service ]] \
  && command -v systemctl >/dev/null; then
  if [[ -d /run/systemd/system ]]; then
    systemctl disable --now containerd.service >/dev/null 2>&1 || true
  else
    systemctl disable containerd.service >/dev/null 2>&1 || true
  fi
fi
