#!/usr/bin/env bash
# The tools `make image` needs, from Debian's packages, installed only when missing; and the
# qemu emulator registered with binfmt_misc for every foreign architecture named.
#
#   deps.sh [ARCH...]     ARCH in Debian's names (amd64, arm64)
#
# The registration is the one change to the host that cannot be kept private: binfmt_misc is
# global. It is made only when the entry is not there already.
set -euo pipefail

log() { echo "image-deps: $*" >&2; }

# command -> Debian package
declare -A pkg=(
  [buildah]=buildah
  [runc]=runc
  [mmdebstrap]=mmdebstrap
  [arch-test]=arch-test # mmdebstrap's check that a foreign architecture can run
)
native=$(dpkg --print-architecture)
declare -A qemu=([amd64]=x86_64 [arm64]=aarch64)
foreign=()
for arch in "$@"; do
  [[ -n "${qemu[$arch]:-}" ]] || { log "unknown architecture $arch (known: ${!qemu[*]})"; exit 1; }
  [[ "$arch" == "$native" ]] || foreign+=("$arch")
done

missing=()
for cmd in "${!pkg[@]}"; do
  command -v "$cmd" >/dev/null || missing+=("${pkg[$cmd]}")
done
for arch in "${foreign[@]}"; do
  [[ -e "/usr/lib/binfmt.d/qemu-${qemu[$arch]}.conf" ]] || { missing+=(qemu-user-static); break; }
done

if [[ ${#missing[@]} -gt 0 ]]; then
  [[ $(id -u) -eq 0 ]] || { log "missing ${missing[*]}: run as root, or apt-get install them"; exit 1; }
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y --no-install-recommends "${missing[@]}" >&2 \
    || { apt-get update >&2 && apt-get install -y --no-install-recommends "${missing[@]}" >&2; }
fi

binfmt=/proc/sys/fs/binfmt_misc
for arch in "${foreign[@]}"; do
  name="qemu-${qemu[$arch]}"
  if [[ ! -e "$binfmt/register" ]]; then
    mount -t binfmt_misc binfmt_misc "$binfmt" \
      || { log "cannot mount binfmt_misc at $binfmt: $arch binaries cannot be emulated"; exit 1; }
  fi
  # Without F the kernel looks the interpreter up by path in the emulated process's own
  # root: inside a container (runc, buildah run) that path does not exist. An entry made
  # without it (by hand, or by an older binfmt-support) is made again with Debian's line.
  if [[ -e "$binfmt/$name" ]] && ! grep -q '^flags: .*F' "$binfmt/$name"; then
    log "$name is registered without the F flag: registering it again"
    echo -1 >"$binfmt/$name"
  fi
  if [[ ! -e "$binfmt/$name" ]]; then
    # The line from qemu-user-static, flags F (the interpreter is opened now, so it works in
    # containers and chroots) and P, C, O as Debian ships them.
    log "registering $name with binfmt_misc"
    cat "/usr/lib/binfmt.d/$name.conf" >"$binfmt/register"
  fi
  [[ "$(head -n 1 "$binfmt/$name")" == enabled ]] \
    || { log "$binfmt/$name is registered but disabled: echo 1 > $binfmt/$name"; exit 1; }
  grep -q '^flags: .*F' "$binfmt/$name" \
    || { log "$binfmt/$name lacks the F flag (/usr/lib/binfmt.d/$name.conf)"; exit 1; }
done
