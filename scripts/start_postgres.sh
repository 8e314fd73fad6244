#!/usr/bin/env bash
# Start a throwaway PostgreSQL cluster on 127.0.0.1 (for ect's team-mode tests and bench).
#
#   eval "$(scripts/start_postgres.sh start [DIR])"   # prints: export ECT_TEST_PG_URL=postgresql://...
#   scripts/start_postgres.sh stop [DIR]
#
# Uses Debian's postgresql binaries (/usr/lib/postgresql/*/bin). As root it runs the server as
# the `postgres` user (root cannot run postgres). Trust auth, loopback only, a free port.
set -euo pipefail
cmd=${1:-start}
dir=${2:-${TMPDIR:-/tmp}/ect-pg}
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [[ -z "$bindir" ]]; then
  bindir=$(dirname "$(command -v pg_ctl 2>/dev/null || echo /nonexistent/pg_ctl)")
fi
if [[ ! -x "$bindir/pg_ctl" ]]; then
  echo "start_postgres.sh: no PostgreSQL binaries (apt-get install -y postgresql)" >&2
  exit 2
fi
as_pg() {
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}
case "$cmd" in
  start)
    if [[ -f "$dir/port" ]] && as_pg "$bindir/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
      port=$(cat "$dir/port")
    else
      mkdir -p "$dir"
      if [[ $(id -u) -eq 0 ]]; then
        chown postgres: "$dir"
        if ! runuser -u postgres -- test -w "$dir"; then
          echo "start_postgres.sh: user postgres cannot reach $dir (use a directory under /tmp)" >&2
          exit 2
        fi
      fi
      if [[ ! -f "$dir/data/PG_VERSION" ]]; then
        if ! as_pg "$bindir/initdb" -D "$dir/data" -U ect -A trust --no-sync -E UTF8 >"$dir/initdb.log" 2>&1; then
          cat "$dir/initdb.log" >&2; exit 1
        fi
      fi
      if [[ -f "$dir/port" ]]; then
        port=$(cat "$dir/port")  # a restart keeps its URL
      else
        port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        echo "$port" >"$dir/port"
      fi
      if ! as_pg "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
        -o "-h 127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
        start >/dev/null; then
        tail -20 "$dir/server.log" >&2; exit 1
      fi
      as_pg "$bindir/createdb" -h 127.0.0.1 -p "$port" -U ect ect 2>/dev/null || true
    fi
    echo "export ECT_TEST_PG_URL=postgresql://ect@127.0.0.1:$port/ect"
    ;;
  stop)
    if [[ -d "$dir/data" ]]; then as_pg "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true; fi
    ;;
  *)
    echo "usage: $0 start|stop [DIR]" >&2; exit 2;;
esac
