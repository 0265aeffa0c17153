#!/usr/bin/env bash
# Starts a private Docker engine and a private Podman setup for the container tests
# (test/run-containers.test.ts), and stops them. Nothing of the host's own engines is
# touched: dockerd listens on DIR/docker.sock with its data under DIR; podman keeps its
# storage under DIR (vfs) and runs runc (crun fails on cgroups on some CI machines).
#   container-engines.sh start DIR   prints NAME=VALUE lines (the env the engine CLIs need)
#   container-engines.sh stop DIR    stops dockerd, removes DIR
# Exits non-zero with dockerd's log when the engine does not come up.
set -euo pipefail
mode=$1
dir=$2
case "$mode" in
start)
  mkdir -p "$dir"
  # --iptables=false --bridge=none: no host network changes; vfs: works on any filesystem, no overlay mount.
  dockerd --iptables=false --bridge=none --storage-driver=vfs \
    -H "unix://$dir/docker.sock" --data-root "$dir/docker-data" --exec-root "$dir/docker-exec" \
    --pidfile "$dir/docker.pid" >"$dir/dockerd.log" 2>&1 </dev/null &
  echo $! >"$dir/dockerd.launcher"
  for _ in $(seq 1 300); do
    if DOCKER_HOST="unix://$dir/docker.sock" docker info --format '{{.ServerVersion}}' >/dev/null 2>&1; then break; fi
    if ! kill -0 "$(cat "$dir/dockerd.launcher")" 2>/dev/null; then break; fi
    sleep 0.1
  done
  if ! DOCKER_HOST="unix://$dir/docker.sock" docker info --format '{{.ServerVersion}}' >/dev/null 2>&1; then
    echo "container-engines: dockerd did not start; its log:" >&2
    tail -20 "$dir/dockerd.log" >&2
    exit 1
  fi
  cat >"$dir/containers.conf" <<CONF
[containers]
default_ulimits = []
# Like dockerd's --bridge=none: a container without --network none gets no bridge, so the
# tests never add an interface or firewall rule to the host (podman's default would).
netns = "none"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
  cat >"$dir/storage.conf" <<CONF
[storage]
driver = "vfs"
graphroot = "$dir/podman-root"
runroot = "$dir/podman-run"
CONF
  env="CONTAINERS_CONF=$dir/containers.conf CONTAINERS_STORAGE_CONF=$dir/storage.conf"
  if ! err=$(env $env podman info --format '{{.Host.OCIRuntime.Name}}' 2>&1 >/dev/null); then
    echo "container-engines: podman cannot run here: $err" >&2
    exit 1
  fi
  echo "DOCKER_HOST=unix://$dir/docker.sock"
  echo "CONTAINERS_CONF=$dir/containers.conf"
  echo "CONTAINERS_STORAGE_CONF=$dir/storage.conf"
  ;;
stop)
  if [ -f "$dir/docker.pid" ]; then
    pid=$(cat "$dir/docker.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
  ;;
*)
  echo "usage: container-engines.sh start|stop DIR" >&2
  exit 2
  ;;
esac
