#!/usr/bin/env bash
# Installs everything Stapes needs on a Debian 12 host, idempotently:
# Debian packages, root's subordinate id range, and the virtual environment in .venv.
# Set STAPES_SETUP_TEST=1 to also install what the test suite needs (incus-client, pytest...).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "setup-host.sh must run as root (it installs Debian packages)" >&2
  exit 1
fi

packages=(lxc lxc-dev gcc pkg-config python3-venv busybox-static debootstrap squashfs-tools
          uidmap xz-utils iproute2 util-linux tar rsync btrfs-progs e2fsprogs
          criu  # live container migration (checked with criu check before use)
          gzip bzip2 zstd lz4  # the compression algorithms of backups
          dnsmasq-base nftables  # managed networks: DHCP and DNS, NAT
          skopeo umoci  # OCI images: copy between transports, unpack
          qemu-system-x86 qemu-utils ovmf genisoimage  # VMs: QEMU, disks, UEFI, config drives
          fdisk dosfstools mtools)  # VM images: GPT disks with an EFI system partition
# bookworm-backports: libcowsql0 (a cluster keeps its state in cowsql, as Incus does) and, for
# the tests, the real incus client (the wire-compatibility oracle of the tests).
if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  mirror=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  if [ -z "$mirror" ]; then
    mirror=$(awk '$1=="deb" && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list)
  fi
  echo "deb $mirror bookworm-backports main" > /etc/apt/sources.list.d/stapes-backports.list
fi
backports=()  # installed from bookworm-backports
dpkg-query -W -f='${Status}' libcowsql0 2>/dev/null | grep -q 'install ok installed' \
  || backports+=(libcowsql0)
# The web UI is built with Node.js and npm (a machine may already have a newer Node.js).
command -v node >/dev/null || packages+=(nodejs)
command -v npm >/dev/null || packages+=(npm)
if [ "${STAPES_SETUP_TEST:-0}" = 1 ]; then
  packages+=(chromium)  # the web UI's browser tests (Playwright drives Debian's chromium)
  command -v incus >/dev/null || backports+=(incus-client)
  # A local OCI registry (on loopback, started by the test itself) for the registry remote test
  command -v docker-registry >/dev/null || backports+=(docker-registry)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ] || [ ${#backports[@]} -gt 0 ]; then
  echo "Installing Debian packages: ${missing[*]} ${backports[*]}"
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  if [ ${#missing[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${missing[@]}" >/dev/null
  fi
  if [ ${#backports[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -t bookworm-backports \
      install -y -qq "${backports[@]}" >/dev/null
  fi
fi

# Unprivileged containers map container root to this range (Incus uses the same default).
for f in /etc/subuid /etc/subgid; do
  touch "$f"
  grep -qE '^(root|0):' "$f" || echo "root:1000000:1000000000" >> "$f"
done

# The virtual environment: every Python dependency, liblxc's bindings built from PyPI.
python=${STAPES_PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
extras="[daemon]"
[ "${STAPES_SETUP_TEST:-0}" = 1 ] && extras="[daemon,test]"
stamp=".venv/.stapes-installed$extras"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/pip install -q --disable-pip-version-check -e ".$extras"
  touch "$stamp"
fi
# pylxd's own integration suite (in its sdist, not its wheel) is a peer test of the API: the
# sdist of the installed pylxd, unpacked once into the virtual environment.
if [ "${STAPES_SETUP_TEST:-0}" = 1 ]; then
  pylxd_version=$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("pylxd"))')
  pylxd_src=".venv/share/pylxd-$pylxd_version"
  if [ ! -d "$pylxd_src/integration" ]; then
    scratch=$(mktemp -d)
    .venv/bin/pip download -q --disable-pip-version-check --no-deps --no-binary :all: \
      -d "$scratch" "pylxd==$pylxd_version"
    mkdir -p .venv/share
    tar -xzf "$scratch"/pylxd-*.tar.gz -C .venv/share
    rm -rf "$scratch"
  fi
fi

# The web UI (served by stapesd at /ui/): its npm packages as package-lock.json pins them, then
# the build into ui/dist, redone when a source changed.
if [ ! -d ui/node_modules ] || [ ui/package-lock.json -nt ui/node_modules/.package-lock.json ]; then
  (cd ui && npm ci --no-audit --no-fund --loglevel=error)
fi
if [ ! -f ui/dist/index.html ] || [ -n "$(find ui/src ui/build.mjs ui/package-lock.json -newer ui/dist/index.html -print -quit)" ]; then
  (cd ui && npm run --silent build)
fi

# Byte-compile our sources once: the CLI starts faster when nothing is compiled per run.
.venv/bin/python -m compileall -q src >/dev/null
.venv/bin/python -c 'import lxc, aiohttp, pydantic' || {
  echo "the virtual environment cannot import liblxc's bindings" >&2; exit 1; }
