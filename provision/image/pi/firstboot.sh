#!/bin/sh
# coralpi first-boot run, written to the boot partition by `coralpi image prepare`.
#
# Provisions this Pi from the bundle beside this script, with no controller:
#   1. hostname (firstrun route; cloud-init sets it on Trixie) and the SSH key, if given;
#   2. Ansible: Debian's python3-yaml/jinja2/cryptography/packaging/resolvelib from the
#      mirror (or the apt proxy of the bundle) plus the bundle's pure-Python ansible-core
#      wheel in a venv (/opt/coralpi/ansible);
#   3. ansible-playbook -c local playbooks/site.yml: coralpi's roles, then verify;
#   4. the verify report and a status file go to <boot>/coralpi-report/;
#   5. clean-up: on success the bundle (with any setting that may hold a credential) is
#      deleted; on Trixie coralpi's runcmd and Imager's passwords leave the seed files.
#      The hook itself is removed by firstrun.sh (Bookworm) or never re-run (cloud-init).
# Route image-build (`coralpi image build`, in a chroot of the image): steps 2 and 3 only,
# with playbooks/image.yml (verify becomes a first-boot unit); the bundle is the builder's.
# Usage: sh firstboot.sh firstrun|cloud-init|image-build
set -u
ROUTE=${1:-firstrun}
BUNDLE=${2:-$(cd "$(dirname "$0")" && pwd)}
# Run from a copy: the bundle (this file included) is deleted at the end.
if [ "${CORALPI_FIRSTBOOT_COPY:-}" != 1 ]; then
  cp "$BUNDLE/firstboot.sh" /run/coralpi-firstboot.sh 2>/dev/null \
    || cp "$BUNDLE/firstboot.sh" /tmp/coralpi-firstboot.sh
  COPY=/run/coralpi-firstboot.sh
  [ -f "$COPY" ] || COPY=/tmp/coralpi-firstboot.sh
  CORALPI_FIRSTBOOT_COPY=1 exec sh "$COPY" "$ROUTE" "$BUNDLE"
fi
BOOT=$(dirname "$BUNDLE")
REPORT="$BOOT/coralpi-report"
mkdir -p "$REPORT"
exec >>"$REPORT/firstboot.log" 2>&1
export HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8

# shellcheck source=/dev/null
. "$BUNDLE/bundle.env"

STATUS=ok
FAILED_STEP=""
PLAYBOOK=playbooks/site.yml
NO_REBOOT=""
if [ "$ROUTE" = image-build ]; then
  PLAYBOOK=playbooks/image.yml
  # A chroot cannot reboot; the firmware reads config.txt at the image's first boot anyway.
  NO_REBOOT="coralpi_allow_reboot=false"
  # Byte-code compiled with hash-based invalidation: the same files in every build.
  export SOURCE_DATE_EPOCH="${CORALPI_SOURCE_DATE_EPOCH:-315532800}"
fi
log() { echo "coralpi-firstboot $(date -u +%Y-%m-%dT%H:%M:%SZ): $*"; }
fail() { STATUS=failed; FAILED_STEP=$1; log "FAILED: $1"; }

log "start (route $ROUTE, bundle $BUNDLE)"

if [ "$ROUTE" = firstrun ] && [ -n "$CORALPI_HOSTNAME" ]; then
  log "hostname $CORALPI_HOSTNAME"
  echo "$CORALPI_HOSTNAME" > /etc/hostname
  if grep -q '^127\.0\.1\.1' /etc/hosts; then
    sed -i "s/^127\.0\.1\.1.*/127.0.1.1\t$CORALPI_HOSTNAME/" /etc/hosts
  else
    printf '127.0.1.1\t%s\n' "$CORALPI_HOSTNAME" >> /etc/hosts
  fi
  hostname "$CORALPI_HOSTNAME" 2>/dev/null || true
fi

if [ -f "$BUNDLE/authorized_keys" ]; then
  home=$(getent passwd "$CORALPI_USER" | cut -d: -f6)
  if [ -n "$home" ]; then
    log "SSH key for $CORALPI_USER"
    install -d -m 700 -o "$CORALPI_USER" -g "$(id -gn "$CORALPI_USER")" "$home/.ssh"
    touch "$home/.ssh/authorized_keys"
    while IFS= read -r key; do
      [ -n "$key" ] || continue
      grep -qxF "$key" "$home/.ssh/authorized_keys" || echo "$key" >> "$home/.ssh/authorized_keys"
    done < "$BUNDLE/authorized_keys"
    chown "$CORALPI_USER:$(id -gn "$CORALPI_USER")" "$home/.ssh/authorized_keys"
    chmod 600 "$home/.ssh/authorized_keys"
    if command -v systemctl >/dev/null; then systemctl enable ssh >/dev/null 2>&1 || true; fi
  else
    fail "ssh-key: user $CORALPI_USER does not exist"
  fi
fi

APT_PROXY_OPT=""
if [ -n "$CORALPI_APT_PROXY" ]; then APT_PROXY_OPT="-o Acquire::http::Proxy=$CORALPI_APT_PROXY"; fi
ANSIBLE_VENV=/opt/coralpi/ansible
if [ "$STATUS" = ok ]; then
  log "Ansible: apt-get install $CORALPI_ANSIBLE_DEBS"
  # shellcheck disable=SC2086
  if ! { apt-get $APT_PROXY_OPT -q update && \
         apt-get $APT_PROXY_OPT -q -y --no-install-recommends install $CORALPI_ANSIBLE_DEBS; }; then
    fail "apt-get install of Ansible's Debian dependencies"
  fi
fi
if [ "$STATUS" = ok ]; then
  log "Ansible: ansible-core $CORALPI_ANSIBLE_VERSION from the bundle into $ANSIBLE_VENV"
  if ! { [ -x "$ANSIBLE_VENV/bin/python" ] || python3 -m venv --system-site-packages "$ANSIBLE_VENV"; } \
     || ! "$ANSIBLE_VENV/bin/python" -m pip install -q --no-index --disable-pip-version-check \
          --find-links "$BUNDLE/ansible" "ansible-core==$CORALPI_ANSIBLE_VERSION"; then
    fail "install ansible-core $CORALPI_ANSIBLE_VERSION from the bundle"
  fi
fi
if [ "$STATUS" = ok ]; then
  log "ansible-playbook -c local $PLAYBOOK"
  rm -f "$REPORT/localhost.json"
  if ! (cd "$BUNDLE" && ANSIBLE_CONFIG="$BUNDLE/ansible.cfg" ANSIBLE_NOCOLOR=1 \
        "$ANSIBLE_VENV/bin/ansible-playbook" -c local -i inventory.ini "$PLAYBOOK" \
        -e @vars/plan.json -e @vars/host.json -e "coralpi_verify_report_dir=$REPORT" \
        ${NO_REBOOT:+-e "$NO_REBOOT"}); then
    fail "ansible-playbook"
  fi
  if [ -f "$REPORT/localhost.json" ]; then mv "$REPORT/localhost.json" "$REPORT/verify.json"; fi
fi
VERIFY_RESULT=none
if [ "$ROUTE" = image-build ]; then
  VERIFY_RESULT=deferred
elif [ -f "$REPORT/verify.json" ]; then
  VERIFY_RESULT=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("result"))' \
                  "$REPORT/verify.json" 2>/dev/null || echo unreadable)
  if [ "$VERIFY_RESULT" = fail ] && [ "$STATUS" = ok ]; then fail "verify"; fi
elif [ "$STATUS" = ok ]; then
  fail "verify: no report"
fi

if [ "$ROUTE" = cloud-init ]; then
  log "removing coralpi's runcmd and any password from the cloud-init seed files"
  python3 "$BUNDLE/scrub_seed.py" "$BOOT" || log "scrub_seed.py failed"
fi

KEPT=false
if [ "$ROUTE" = image-build ]; then
  log "image build: the bundle belongs to coralpi image build"
elif [ "$STATUS" = ok ]; then
  log "success: removing the bundle"
  rm -rf "$BUNDLE"
else
  KEPT=true
  log "the bundle stays at $BUNDLE: fix the cause, then run: sudo sh $BUNDLE/firstboot.sh $ROUTE"
fi
python3 - "$REPORT/status.json" "$STATUS" "$FAILED_STEP" "$VERIFY_RESULT" "$CORALPI_HOSTNAME" \
  "$ROUTE" "$KEPT" <<'PY'
import datetime, json, sys
path, status, step, result, host, route, kept = sys.argv[1:8]
json.dump({"status": status, "failed_step": step or None, "verify_result": result,
           "hostname": host, "route": route, "bundle_kept": kept == "true",
           "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat()},
          open(path, "w"), indent=2)
PY
sync
log "done: $STATUS"
exit 0
