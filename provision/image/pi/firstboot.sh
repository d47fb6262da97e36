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
# The apt proxy of the bundle (CORALPI_APT_PROXY) reaches apt-get without its user and
# password; those go to /etc/apt/auth.conf.d/coralpi-proxy.conf (root, 0600), the file the
# coralpi_apt role keeps, byte for byte. Tests source the functions below with
# CORALPI_FIRSTBOOT_FUNCTIONS=1 (nothing else runs then).
set -u

log() { printf 'coralpi-firstboot %s: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*"; }
fail() { STATUS=failed; FAILED_STEP=$1; log "FAILED: $1"; }

# A hostname as `coralpi image prepare` accepts it: 1-63 letters, digits and inner hyphens.
valid_hostname() {
  case $1 in
    '' | -* | *- | *[!A-Za-z0-9-]*) return 1 ;;
  esac
  [ "${#1}" -le 63 ]
}

# A user name that cannot be read as an option or split into words.
valid_user() {
  case $1 in
    '' | -* | *[!A-Za-z0-9._-]*) return 1 ;;
  esac
}

# Debian package names separated by spaces, for the list of Ansible's Debian packages that
# is split into words on purpose.
valid_packages() {
  case $1 in
    *[!a-z0-9+.\ -]* | [-+.]* | *' '[-+.]*) return 1 ;;
  esac
}

# apt_proxy_setup ROOT: set up the apt proxy CORALPI_APT_PROXY (read from the environment,
# never from a command line) under ROOT (empty: /). Prints the proxy URL without user and
# password, for apt-get's command line, where every local user can read it. Its user and
# password, if any, go to ROOT/etc/apt/auth.conf.d/coralpi-proxy.conf (root, 0600), in the
# form the coralpi_apt role writes (its template proxy-auth.conf.j2): percent-decoded, one
# entry with the scheme (apt >= 1.9 needs it for an http proxy) and one without (Buster's
# apt 1.8). Without user and password (or without a proxy) that file is removed. A URL apt
# would read otherwise, or one that cannot be written safely, is refused: exit status 1 and
# the reason (never the password) on stderr.
apt_proxy_setup() {
  CORALPI_APT_PROXY=${CORALPI_APT_PROXY:-} python3 - "${1:-}" <<'PY'
import os
import re
import sys
from urllib.parse import unquote

root = sys.argv[1]
proxy = os.environ.get("CORALPI_APT_PROXY", "")
path = root + "/etc/apt/auth.conf.d/coralpi-proxy.conf"


def refuse(why):
    sys.stderr.write("coralpi_apt_proxy " + why + "\n")
    sys.exit(1)


entries = ""
if proxy:
    # As the coralpi_apt role checks and splits it (its defaults/main.yml), and as apt reads
    # a URL: the user and password are what comes before the last '@' of host[:port].
    if re.search(r'[\s"\\\x00-\x1f\x7f]', proxy):
        refuse("holds whitespace, a control character, a double quote or a backslash")
    url = re.fullmatch(r"(https?)://(?:([^/]*)@)?([^/]*)(/.*)?", proxy, re.S)
    if not url:
        refuse("is not an http://[user:password@]host[:port] URL")
    scheme, userinfo, hostport, rest = url.groups()
    machine = re.sub(r"^\[([^]]*)\]", r"\1", hostport)
    if not re.fullmatch(r"([0-9A-Fa-f:.]+|[A-Za-z0-9.-]+)(:[0-9]{1,5})?", machine):
        refuse("names no host[:port] apt can use")
    login, _, password = (userinfo or "").partition(":")
    login, password = unquote(login), unquote(password)
    for value in (login, password):
        if re.search(r"[\s\x00-\x1f\x7f]", value) or value == "machine":
            refuse(
                "has a user or password that apt's auth.conf.d cannot hold (whitespace, a"
                ' control character, or the word "machine")'
            )
    tokens = (" login " + login if login else "") + (" password " + password if password else "")
    if tokens:
        entries = (
            "# coralpi: the apt proxy's credentials (inventory variable coralpi_apt_proxy); root only.\n"
            "# apt >= 1.9 takes the first entry (http:// is needed to send them over http),\n"
            "# Buster's apt 1.8 the second (it matches no entry that has a scheme).\n"
            "machine " + scheme + "://" + machine + tokens + "\n"
            "machine " + machine + tokens + "\n"
        )
    print(scheme + "://" + hostport + (rest or ""))

if not entries:
    if os.path.lexists(path):
        os.remove(path)
    sys.exit(0)
try:
    with open(path) as f:
        same = f.read() == entries
except OSError:
    same = False
if not same:
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    part = path + ".coralpi-part"
    if os.path.lexists(part):
        os.remove(part)
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(entries)
        f.flush()
        os.fsync(f.fileno())
    os.replace(part, path)
if os.geteuid() == 0:
    os.chown(path, 0, 0)
os.chmod(path, 0o600)
PY
}

if [ "${CORALPI_FIRSTBOOT_FUNCTIONS:-}" = 1 ]; then
  return 0 2>/dev/null || exit 0
fi

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
log "start (route $ROUTE, bundle $BUNDLE)"

if [ "$ROUTE" = firstrun ] && [ -n "$CORALPI_HOSTNAME" ]; then
  if valid_hostname "$CORALPI_HOSTNAME"; then
    log "hostname $CORALPI_HOSTNAME"
    printf '%s\n' "$CORALPI_HOSTNAME" > /etc/hostname
    # Checked above: letters, digits and hyphens only, nothing sed would read as syntax.
    if grep -q '^127\.0\.1\.1' /etc/hosts; then
      sed -i "s/^127\.0\.1\.1.*/127.0.1.1\t$CORALPI_HOSTNAME/" /etc/hosts
    else
      printf '127.0.1.1\t%s\n' "$CORALPI_HOSTNAME" >> /etc/hosts
    fi
    hostname "$CORALPI_HOSTNAME" 2>/dev/null || true
  else
    fail "hostname: not 1-63 letters, digits and inner hyphens"
  fi
fi

if [ -f "$BUNDLE/authorized_keys" ] && ! valid_user "$CORALPI_USER"; then
  fail "ssh-key: CORALPI_USER is not a user name"
elif [ -f "$BUNDLE/authorized_keys" ]; then
  home=$(getent passwd "$CORALPI_USER" | cut -d: -f6)
  if [ -n "$home" ]; then
    log "SSH key for $CORALPI_USER"
    install -d -m 700 -o "$CORALPI_USER" -g "$(id -gn "$CORALPI_USER")" "$home/.ssh"
    touch "$home/.ssh/authorized_keys"
    while IFS= read -r key; do
      [ -n "$key" ] || continue
      grep -qxF -e "$key" "$home/.ssh/authorized_keys" \
        || printf '%s\n' "$key" >> "$home/.ssh/authorized_keys"
    done < "$BUNDLE/authorized_keys"
    chown "$CORALPI_USER:$(id -gn "$CORALPI_USER")" "$home/.ssh/authorized_keys"
    chmod 600 "$home/.ssh/authorized_keys"
    if command -v systemctl >/dev/null; then systemctl enable ssh >/dev/null 2>&1 || true; fi
  else
    fail "ssh-key: user $CORALPI_USER does not exist"
  fi
fi

# The proxy's URL goes on apt-get's command line without its user and password (any local
# user can read a command line); those are in apt's auth.conf.d, which only root reads.
APT_PROXY_URL=""
if [ "$STATUS" = ok ]; then
  if APT_PROXY_URL=$(apt_proxy_setup ""); then
    if [ -n "$APT_PROXY_URL" ]; then log "apt proxy $APT_PROXY_URL"; fi
  else
    fail "apt proxy: coralpi_apt_proxy cannot be used (see above)"
  fi
fi
ANSIBLE_VENV=/opt/coralpi/ansible
if [ "$STATUS" = ok ] && ! valid_packages "$CORALPI_ANSIBLE_DEBS"; then
  fail "apt-get install: CORALPI_ANSIBLE_DEBS is not a list of Debian package names"
fi
if [ "$STATUS" = ok ]; then
  log "Ansible: apt-get install $CORALPI_ANSIBLE_DEBS"
  # The package list is split into words on purpose (checked above; no globbing).
  set -f
  # shellcheck disable=SC2086
  if ! { apt-get ${APT_PROXY_URL:+-o "Acquire::http::Proxy=$APT_PROXY_URL"} -q update && \
         apt-get ${APT_PROXY_URL:+-o "Acquire::http::Proxy=$APT_PROXY_URL"} -q -y \
           --no-install-recommends install $CORALPI_ANSIBLE_DEBS; }; then
    fail "apt-get install of Ansible's Debian dependencies"
  fi
  set +f
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
  # As JSON, not key=value: Ansible would split a key=value at a space in the path.
  REPORT_VARS=$(python3 -c 'import json, sys; print(json.dumps({"coralpi_verify_report_dir": sys.argv[1]}))' \
                "$REPORT")
  if ! (cd "$BUNDLE" && ANSIBLE_CONFIG="$BUNDLE/ansible.cfg" ANSIBLE_NOCOLOR=1 \
        "$ANSIBLE_VENV/bin/ansible-playbook" -c local -i inventory.ini "$PLAYBOOK" \
        -e @vars/plan.json -e @vars/host.json -e "$REPORT_VARS" \
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
elif [ "$STATUS" = ok ] && [ -f "$BUNDLE/bundle.env" ] && [ "$BUNDLE" != / ]; then
  log "success: removing the bundle"
  rm -rf -- "$BUNDLE"
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
