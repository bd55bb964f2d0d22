#!/usr/bin/env bash
# Run a command with a throwaway PostgreSQL for the PostgreSQL tests, and stop it afterwards:
#
#     .ci/with-postgres.sh .venv/bin/pytest tests -q
#
# When TETHER_TEST_PG_URL is already set, that server is used and nothing is started. Otherwise
# .ci/start-postgres.sh starts one (installing Debian's postgresql package as root when needed);
# if that cannot be done, the command still runs, the PostgreSQL tests are skipped, and this says
# so first. With TETHER_REQUIRE_PG=1 (CI) a server that cannot be started is an error instead.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ -z "${TETHER_TEST_PG_URL:-}" ]; then
  if env_lines=$(.ci/start-postgres.sh); then
    eval "$env_lines"
    stop_pg() {
      local ctl owner=postgres
      ctl=$(ls /usr/lib/postgresql/*/bin/pg_ctl 2>/dev/null | head -1)
      [ -n "$ctl" ] || ctl=$(command -v pg_ctl)
      id "$owner" >/dev/null 2>&1 || owner=nobody
      if [ "$(id -u)" -eq 0 ]; then
        runuser -u "$owner" -- "$ctl" -D "$TETHER_TEST_PG_DIR/data" stop -m fast >/dev/null 2>&1
      else
        "$ctl" -D "$TETHER_TEST_PG_DIR/data" stop -m fast >/dev/null 2>&1
      fi
      rm -rf "$TETHER_TEST_PG_DIR"
    }
    trap stop_pg EXIT
    echo "with-postgres: PostgreSQL tests run against $TETHER_TEST_PG_URL (stopped afterwards)" >&2
  elif [ "${TETHER_REQUIRE_PG:-}" = 1 ]; then
    echo "with-postgres: could not start PostgreSQL, and TETHER_REQUIRE_PG=1 requires it" >&2
    exit 1
  else
    echo "with-postgres: could not start PostgreSQL (see above); the PostgreSQL tests will be SKIPPED." >&2
    echo "with-postgres: install PostgreSQL (Debian: apt-get install postgresql) or set TETHER_TEST_PG_URL." >&2
  fi
fi
"$@"
