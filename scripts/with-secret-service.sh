#!/usr/bin/env bash
# Run a command inside a private D-Bus session with an unlocked gnome-keyring
# (a real Secret Service), so keyring tests and benches need no desktop session.
# Usage: scripts/with-secret-service.sh COMMAND [ARGS...]
set -euo pipefail
for tool in keyctl dbus-run-session gnome-keyring-daemon; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "with-secret-service: '$tool' is missing; run scripts/install-system-deps.sh" >&2
    exit 1
  fi
done
keyring_home=$(mktemp -d)
trap 'rm -rf "$keyring_home"' EXIT
export XDG_DATA_HOME="$keyring_home"
export CREDPROXY_TEST_SECRET_SERVICE=1
# The unlock password only protects this throwaway keyring; it must be non-empty.
keyctl session - dbus-run-session -- sh -c \
  'printf %s credproxy-test | gnome-keyring-daemon --unlock --components=secrets >/dev/null && exec "$@"' \
  sh "$@"
