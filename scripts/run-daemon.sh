#!/usr/bin/env bash
# `make run`: start stapesd in the background (if it is not running), put `stapes` and `stapesd`
# on PATH, give the default profile a NIC on the managed bridge stapesbr0, and launch a demo
# Debian 12 container (building the image the first time).
# `scripts/run-daemon.sh stop` stops the daemon; containers keep running, as with Incus.
set -euo pipefail
cd "$(dirname "$0")/.."
STAPES_DIR=${STAPES_DIR:-/var/lib/stapes}
export STAPES_DIR
pidfile="$STAPES_DIR/stapesd.pid"
venv=$(pwd)/.venv

if [ "${1:-}" = stop ]; then
  [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  rm -f "$pidfile"
  exit 0
fi

ln -sf "$venv/bin/stapes" /usr/local/bin/stapes
ln -sf "$venv/bin/stapesd" /usr/local/bin/stapesd

mkdir -p "$STAPES_DIR/logs"
if ! { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }; then
  setsid nohup "$venv/bin/stapesd" --logfile "$STAPES_DIR/logs/stapesd.log" \
    >/dev/null 2>&1 < /dev/null &
  echo $! > "$pidfile"
  for _ in $(seq 1 100); do
    stapes list --format csv >/dev/null 2>&1 && break
    sleep 0.1
  done
fi
stapes list --format csv >/dev/null || { echo "stapesd did not start: see $STAPES_DIR/logs/stapesd.log" >&2; exit 1; }
echo "stapesd is running (pid $(cat "$pidfile"), socket $STAPES_DIR/unix.socket)"

# A fresh stapesd, like a fresh incusd, has no storage pool until it is set up: `admin init`
# with a preseed makes the dir pool `default`, the managed bridge stapesbr0 (DHCP and DNS for
# the demo, no NAT to the outside) and the default profile's root disk and eth0.
if ! stapes storage list --format csv | grep -q '^default,'; then
  stapes admin init --preseed <<'EOT'
storage_pools:
- name: default
  driver: dir
networks:
- name: stapesbr0
  type: bridge
  config:
    ipv4.address: auto
    ipv4.nat: "false"
    ipv6.address: auto
    ipv6.nat: "false"
profiles:
- name: default
  description: Default Incus profile
  devices:
    root: {type: disk, path: /, pool: default}
    eth0: {type: nic, network: stapesbr0, name: eth0}
EOT
fi

if ! stapes image alias list --format csv | grep -q '^debian/12,'; then
  stapes image build debian/12 --alias debian/12
fi
if ! stapes list --format csv | grep -q '^demo,'; then
  stapes launch debian/12 demo
fi
stapes list
address=$(stapes config get core.https_address)
[[ $address == :* ]] && address="127.0.0.1$address"
if [ -n "$address" ]; then
  echo "Web UI: https://$address/ui/ (enrol the browser with a token: stapes config trust add browser)"
else
  echo "Web UI: stapes config set core.https_address 127.0.0.1:8443, then https://127.0.0.1:8443/ui/"
fi
