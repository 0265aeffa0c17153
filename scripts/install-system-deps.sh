#!/usr/bin/env bash
# Install the Debian packages the tests need (bubblewrap sandbox, a real Secret
# Service, the egress tests' real clients), only when one is missing. Runs apt-get update once.
set -euo pipefail
missing=()
command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
command -v keyctl >/dev/null 2>&1 || missing+=(keyutils)
command -v gnome-keyring-daemon >/dev/null 2>&1 || missing+=(gnome-keyring)
command -v dbus-run-session >/dev/null 2>&1 || missing+=(dbus)
# Real clients of the README's agent example and of the egress proxy tests (readme.test.ts, egress-clients.test.ts).
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v git >/dev/null 2>&1 || missing+=(git)
[ -x /usr/lib/git-core/git-http-backend ] || missing+=(git)
# sandbox-secret-handoff.test.ts starts credproxy from Python inside the sandbox (the system python, not a per-user one under the hidden home).
[ -x /usr/bin/python3 ] || missing+=(python3)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v socat >/dev/null 2>&1 || missing+=(socat)
command -v kubectl >/dev/null 2>&1 || missing+=(kubernetes-client)
# run-job-control.test.ts drives Ctrl-Z and fg on a real terminal.
command -v tmux >/dev/null 2>&1 || missing+=(tmux)
# run-containers.test.ts: a private dockerd and rootful podman on runc (scripts/container-engines.sh); --init needs docker-init (tini) and catatonit.
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v runc >/dev/null 2>&1 || missing+=(runc)
command -v docker-init >/dev/null 2>&1 || missing+=(tini)
command -v catatonit >/dev/null 2>&1 || [ -x /usr/libexec/podman/catatonit ] || missing+=(catatonit)
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-system-deps: missing ${missing[*]}; install them as root:" >&2
  echo "  apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
  exit 1
fi
echo "install-system-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
