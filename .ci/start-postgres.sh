#!/usr/bin/env bash
# Start a throwaway PostgreSQL cluster for the test suite and print how to reach it:
#
#     eval "$(.ci/start-postgres.sh)"      # sets TETHER_TEST_PG_URL (and TETHER_TEST_PG_DIR)
#     stop it:  runuser -u postgres -- pg_ctl -D "$TETHER_TEST_PG_DIR/data" stop -m fast
#
# Installs Debian's postgresql package when no initdb is found (needs root and apt), creates
# a cluster in a temp dir with initdb, starts it with pg_ctl on 127.0.0.1 on a free port, and
# creates the database "tether_test". As root the server runs as the `postgres` user (or
# `nobody` when that user does not exist), since PostgreSQL refuses to run as root.
# Everything but the final `export` lines goes to stderr.
set -euo pipefail

log() { echo "start-postgres: $*" >&2; }

find_bin() {
  local name=$1 d
  if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return 0; fi
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/$name" ] && { echo "$d/$name"; return 0; }
  done
  return 1
}

if ! find_bin initdb >/dev/null; then
  log "initdb not found; installing postgresql from Debian packages"
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    log "cannot install: need root and apt-get (install PostgreSQL and re-run)"; exit 1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
fi
INITDB=$(find_bin initdb)
BIN=$(dirname "$(readlink -f "$INITDB")")
[ -x "$BIN/pg_ctl" ] || BIN=$(dirname "$(find_bin pg_ctl)")

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
DIR=$(mktemp -d "${TMPDIR:-/tmp}/tether-pg.XXXXXX")
chmod 755 "$DIR"

as_owner() { "$@"; }
if [ "$(id -u)" -eq 0 ]; then
  OWNER=postgres
  id "$OWNER" >/dev/null 2>&1 || OWNER=nobody
  chown "$OWNER" "$DIR"
  if command -v runuser >/dev/null; then
    as_owner() { runuser -u "$OWNER" -- "$@"; }
  else
    as_owner() { su -s /bin/sh "$OWNER" -c "$(printf '%q ' "$@")"; }
  fi
fi

log "initdb in $DIR/data (bin $BIN)"
as_owner "$BIN/initdb" -D "$DIR/data" -U postgres --auth=trust -E UTF8 --no-sync >"$DIR/initdb.log" 2>&1 \
  || { cat "$DIR/initdb.log" >&2; exit 1; }
log "starting on 127.0.0.1:$PORT"
as_owner "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 \
  -o "-h 127.0.0.1 -p $PORT -k $DIR -c fsync=off -c max_connections=200" start >&2 \
  || { cat "$DIR/server.log" >&2; exit 1; }
as_owner "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres tether_test

echo "export TETHER_TEST_PG_URL=postgresql://postgres@127.0.0.1:$PORT/tether_test"
echo "export TETHER_TEST_PG_DIR=$DIR"
