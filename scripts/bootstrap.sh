#!/usr/bin/env bash
# Installs everything coralpi's controller and its test suite need on a Debian machine:
# Debian packages (when root) and the project's virtual environment in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  openssh-client sshpass gnupg zstd curl
  # test fleet: throwaway hosts, apt proxy, stand-in Coral repository
  debootstrap apt-cacher-ng iproute2 apt-utils dpkg-dev fakeroot
  # stand-in Coral runtime library (built from C source by the test fleet)
  gcc libc6-dev
  # test fleet ARM hosts under emulation, and their stand-in runtime library
  qemu-user-static gcc-aarch64-linux-gnu libc6-dev-arm64-cross
  gcc-arm-linux-gnueabihf libc6-dev-armhf-cross
  # coralpi image: partition tables (sfdisk), FAT without mounting (mtools, mkfs.fat),
  # ext4 read with debugfs, stand-in cards booted with systemd-nspawn
  fdisk mtools dosfstools e2fsprogs systemd-container
  # the fleet report's browser tests: headless Chromium opens report.html
  chromium
)

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "bootstrap: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # apt-cacher-ng must not start its system service: the test fleet runs its own instance.
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if command -v systemctl >/dev/null && systemctl is-active -q apt-cacher-ng 2>/dev/null; then
      systemctl stop apt-cacher-ng || true
    fi
  fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[pi,dev]'
