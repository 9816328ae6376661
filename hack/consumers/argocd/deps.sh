#!/usr/bin/env bash
# The host packages tests/e2e/test_argocd_deploy.py needs to run Argo CD's application-controller
# and repo-server (built by ../build.sh), from Debian, installed only when missing:
# redis-server (Argo CD's cache; the test starts its own on a loopback port) and git (the
# repo-server's git, and `git daemon` serving the test's repository). No service is started or
# left enabled: Debian's redis-server unit is disabled again when this script installed it.
set -euo pipefail

log() { echo "argocd-deps: $*" >&2; }

# a file each package provides -> the package
declare -A pkg=(
  [/usr/bin/redis-server]=redis-server
  [/usr/bin/git]=git
  [/usr/lib/git-core/git-daemon]=git
)
missing=()
for f in "${!pkg[@]}"; do
  [[ -x "$f" ]] || missing+=("${pkg[$f]}")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)

[[ $(id -u) -eq 0 ]] || { log "missing ${missing[*]}: run as root, or apt-get install them"; exit 1; }
log "installing ${missing[*]}"
had_redis_unit=0
[[ -e /lib/systemd/system/redis-server.service ]] && had_redis_unit=1
export DEBIAN_FRONTEND=noninteractive
# No service may start during the install: the test starts its own redis-server.
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
# The package enables its service (and starts it where systemd runs): the test never uses it.
if [[ $had_redis_unit == 0 && -e /lib/systemd/system/redis-server.service ]] \
  && command -v systemctl >/dev/null; then
  if [[ -d /run/systemd/system ]]; then
    systemctl disable --now redis-server.service >/dev/null 2>&1 || true
  else
    systemctl disable redis-server.service >/dev/null 2>&1 || true
  fi
fi
