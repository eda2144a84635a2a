#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the team store's tests and benchmarks: made in a temporary
# directory, listening on loopback only, with a password (the tests read it from PGPASSWORD, as
# the workbench does), and removed by `stop`.
#
#   eval "$(scripts/postgres.sh start)"   # exports WORKBENCH_PG_URL, PGPASSWORD, WORKBENCH_PG_DIR
#   scripts/postgres.sh stop              # stops the cluster in $WORKBENCH_PG_DIR and removes it
#
# Debian's `postgresql` package provides the server (installed here when apt-get can, as for
# CI). initdb refuses to run as root, so under root the cluster belongs to a system user
# `workbench-pg`, made here when missing.
set -euo pipefail

die() { echo "scripts/postgres.sh: $*" >&2; exit 1; }

find_bin() {
  local b
  for b in /usr/lib/postgresql/*/bin; do
    [ -x "$b/initdb" ] && { echo "$b"; return 0; }
  done
  command -v initdb >/dev/null 2>&1 && { dirname "$(command -v initdb)"; return 0; }
  return 1
}

as_owner() { # runs "$@" as the cluster's owner
  if [ "$(id -u)" = 0 ]; then
    runuser -u workbench-pg -- "$@"
  else
    "$@"
  fi
}

start() {
  local bin
  if ! bin="$(find_bin)"; then
    command -v apt-get >/dev/null 2>&1 \
      || die "PostgreSQL's server (initdb, pg_ctl) is not installed and apt-get is not here to install it; install Debian's postgresql package"
    local sudo=""
    if [ "$(id -u)" != 0 ]; then
      command -v sudo >/dev/null 2>&1 \
        || die "PostgreSQL's server is not installed, and installing it needs root: run \`sudo apt-get install postgresql\` first"
      sudo="sudo"
    fi
    echo "installing Debian's postgresql package..." >&2
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    bin="$(find_bin)" || die "the postgresql package installed no initdb"
  fi
  if [ "$(id -u)" = 0 ] && ! id workbench-pg >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin workbench-pg
  fi
  local dir port password
  dir="$(mktemp -d "${TMPDIR:-/tmp}/workbench-pg.XXXXXX")"
  chmod 755 "$dir"
  [ "$(id -u)" = 0 ] && chown workbench-pg "$dir"
  password="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
  printf '%s\n' "$password" >"$dir/pwfile"
  [ "$(id -u)" = 0 ] && chown workbench-pg "$dir/pwfile"
  as_owner "$bin/initdb" -D "$dir/data" -U workbench --auth=scram-sha-256 --pwfile="$dir/pwfile" \
    -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; die "initdb failed (log above)"; }
  rm -f "$dir/pwfile"
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir -c max_connections=200 -c fsync=on -c synchronous_commit=on" \
    start >&2 || { cat "$dir/server.log" >&2; die "the server did not start (log above)"; }
  if ! PGPASSWORD="$password" "$bin/psql" -h 127.0.0.1 -p "$port" -U workbench -d postgres -qAt \
    -c "CREATE DATABASE workbench" >&2; then
    as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >&2 || true
    rm -rf "$dir"
    die "cannot create the database (the server is stopped and removed)"
  fi
  echo "export WORKBENCH_PG_DIR='$dir'"
  echo "export WORKBENCH_PG_URL='postgres://workbench@127.0.0.1:$port/workbench'"
  echo "export PGPASSWORD='$password'"
}

stop() {
  local dir="${WORKBENCH_PG_DIR:-}"
  [ -n "$dir" ] || die "WORKBENCH_PG_DIR is not set: nothing to stop (it is what \`start\` exported)"
  [ -d "$dir/data" ] || die "\`$dir\` holds no cluster made by this script"
  local bin
  bin="$(find_bin)" || die "pg_ctl is not installed"
  as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >&2 || true
  rm -rf "$dir"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) die "usage: scripts/postgres.sh start|stop" ;;
esac
