# shellcheck shell=bash
# scripts/lib/peers.sh: the programs the test suite runs beside our own (the "peers"), found and
# installed the same way by scripts/install-peers, scripts/test and .ci/run. Source it; it defines
# functions only and sets no shell options.
#
# The peers: nats-server 2.9.10 at /usr/sbin/nats-server (the reference broker the compatibility
# tests compare against; Debian bookworm's package), libssl-dev (OpenSSL's headers and libraries:
# the COpenSSL target, so the build itself needs it), curl (PlatformTests, scripts/platform),
# docker-compose (PlatformTests validate docker-compose.yml with `docker-compose config`; no Docker
# engine needed), python3 with pytest, nats-py and nkeys (the interop suite; nats-py signs nkey
# logins with nkeys) and prometheus_client
# (MonitoringEndpointTests parse /metrics with it), kubernetes-validate and pyyaml (Tests/Deploy
# checks deploy/kubernetes against the API schema; the schemas ship in the package, so it runs offline).
# Debian packages need root (or sudo without a password); the Python packages go to the user's
# site when pip cannot write the system's.

peers_label=${peers_label:-${0##*/}}
peers_pip_packages=(nats-py nkeys pytest prometheus_client kubernetes-validate pyyaml)

peers_have_python_modules() { python3 -c 'import nats, nkeys, pytest, prometheus_client, kubernetes_validate, yaml' > /dev/null 2>&1; }

# peers_missing: sets peers_apt (Debian packages to install) and peers_pip (pip packages) to what is
# missing here.
peers_missing() {
    peers_apt=()
    peers_pip=()
    [[ -x /usr/sbin/nats-server ]] || peers_apt+=(nats-server)
    [[ -f /usr/include/openssl/evp.h ]] || pkg-config --exists openssl 2> /dev/null || peers_apt+=(libssl-dev)
    command -v curl > /dev/null || peers_apt+=(curl)
    command -v docker-compose > /dev/null || peers_apt+=(docker-compose)
    if ! command -v python3 > /dev/null; then
        peers_apt+=(python3 python3-pip)
        peers_pip=("${peers_pip_packages[@]}")
    elif ! peers_have_python_modules; then
        peers_pip=("${peers_pip_packages[@]}")
        python3 -m pip --version > /dev/null 2>&1 || peers_apt+=(python3-pip)
    fi
}

# peers_apt_install PACKAGE...: apt-get install as root (or through `sudo -n`); without either it
# says exactly what to run and returns 1, as it does when the install fails.
peers_apt_install() {
    local as_root=()
    if ((EUID != 0)); then
        if command -v sudo > /dev/null && sudo -n true 2> /dev/null; then
            as_root=(sudo -n)
        else
            echo "$peers_label: missing Debian packages: $*" >&2
            echo "  install them as root, then run this again:" >&2
            echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends $*" >&2
            return 1
        fi
    fi
    echo "$peers_label: installing $* (apt-get)"
    if ! "${as_root[@]}" apt-get update -qq < /dev/null \
        || ! "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends "$@" < /dev/null; then
        echo "$peers_label: apt-get install $* failed" >&2
        return 1
    fi
}

# build_prerequisites_install: what `swift build` needs beyond the toolchain, OpenSSL's headers and
# libraries (libssl-dev) for the COpenSSL target; installs it when missing (scripts/platform).
build_prerequisites_install() {
    [[ -f /usr/include/openssl/evp.h ]] || pkg-config --exists openssl 2> /dev/null || peers_apt_install libssl-dev
}

# peers_install: installs what peers_missing finds. Debian packages with apt-get as root (or through
# `sudo -n`); without either it says exactly what to run and returns 1. Returns 1 when an install
# fails, 0 when nothing is missing afterwards.
peers_install() {
    peers_missing
    if ((${#peers_apt[@]})); then
        peers_apt_install "${peers_apt[@]}" || return 1
    fi
    if ((${#peers_pip[@]})); then
        echo "$peers_label: installing ${peers_pip[*]} (pip)"
        # Debian's own python3 refuses pip installs outside a virtualenv (PEP 668) unless told
        # --break-system-packages; other Pythons (pyenv's) take a plain install.
        python3 -m pip install -q "${peers_pip[@]}" < /dev/null 2> /dev/null \
            || python3 -m pip install -q --break-system-packages "${peers_pip[@]}" < /dev/null \
            || { echo "$peers_label: pip install ${peers_pip[*]} failed" >&2; return 1; }
    fi
    peers_missing
    if ((${#peers_apt[@]} + ${#peers_pip[@]})); then
        echo "$peers_label: still missing after the install: ${peers_apt[*]} ${peers_pip[*]}" >&2
        return 1
    fi
}
