#!/usr/bin/env bash
# Docker Engine + Compose v2 for the compose-stack tests (Debian 12, root). Idempotent; starts dockerd if it is down.
#   Engine: Debian's docker.io (20.10). Compose v2: Debian 12 packages only v1.29, which rejects docker/compose.yaml,
#   so the plugin binary comes from Debian 13's docker-compose package (2.26.1), fetched with apt's own tools into a
#   private apt state (the machine's sources are left as they are) and copied to the CLI plugin folder.
#   debootstrap builds the images' Debian base (no image registry is reachable).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
plugin_dir=/usr/local/lib/docker/cli-plugins
if ! docker compose version >/dev/null 2>&1; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" > "$tmp/sources.list"
  opts=(-o "Dir::Etc::SourceList=$tmp/sources.list" -o Dir::Etc::SourceParts=/dev/null -o "Dir::State::Lists=$tmp/lists"
        -o "Dir::Cache=$tmp/cache" -o Dir::State::status=/dev/null -o APT::Sandbox::User=root)
  apt-get "${opts[@]}" update -qq
  (cd "$tmp" && apt-get "${opts[@]}" download docker-compose >/dev/null)
  dpkg-deb -x "$tmp"/docker-compose_*.deb "$tmp/x"
  mkdir -p "$plugin_dir"
  install -m 0755 "$tmp/x/usr/libexec/docker/cli-plugins/docker-compose" "$plugin_dir/docker-compose"
fi
if ! docker info >/dev/null 2>&1; then
  (setsid dockerd >/var/log/harness-dockerd.log 2>&1 &)
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
fi
echo "docker: $(docker info --format 'engine {{.ServerVersion}}' 2>&1), compose $(docker compose version --short 2>&1)"
