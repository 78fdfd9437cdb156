#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for a test run: initdb in a temporary
# folder, a server on a free loopback port, deleted at the end. No system
# PostgreSQL service is used or needed, only the server binaries
# (scripts/setup.sh installs them). As root the cluster belongs to the
# `postgres` user (PostgreSQL refuses to run as root).
#
#   scripts/test-pg.sh run CMD [ARGS...]
#       start a cluster, run CMD with ALPR_TEST_PG_URL set to its admin URL,
#       stop and delete the cluster whatever CMD does; exit with CMD's status.
#   scripts/test-pg.sh start
#       start one and print `export ALPR_TEST_PG_URL=...` and
#       `export ALPR_TEST_PG_DIR=...` (for eval);
#   scripts/test-pg.sh stop DIR
#       stop the cluster in DIR (ALPR_TEST_PG_DIR) and delete it.
#
# Tests make one database each in it (hub::store::postgres::cluster::
# test_database). The cluster never outlives the run and is never crashed,
# so it runs without fsync: the hubs' durability is tested against their
# own kill -9, and PostgreSQL's own crash recovery against TempCluster.
set -euo pipefail

ROLE=alpr

die() {
    echo "test-pg: $*" >&2
    exit 1
}

# PostgreSQL's server binaries: $PG_BIN, else the newest installed
# version, else initdb on PATH.
pg_bin() {
    if [[ -n "${PG_BIN:-}" ]]; then
        echo "$PG_BIN"
        return
    fi
    local best=""
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V); do
        [[ -x "$d/initdb" ]] && best="$d"
    done
    if [[ -n "$best" && -x "$best/initdb" ]]; then
        echo "$best"
    elif command -v initdb >/dev/null; then
        dirname "$(command -v initdb)"
    else
        die "PostgreSQL's server binaries are not installed (no initdb): run scripts/setup.sh, or set PG_BIN"
    fi
}

# Run a server command as the cluster's owner.
as_owner() {
    if [[ "$(id -u)" == 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

start() {
    local bin dir port started=""
    bin=$(pg_bin)
    dir=$(mktemp -d "${TMPDIR:-/tmp}/alpr-test-pg.XXXXXX")
    if [[ "$(id -u)" == 0 ]]; then
        id postgres >/dev/null 2>&1 || die "as root the cluster runs as user postgres, which does not exist (install postgresql)"
        chown postgres "$dir"
    fi
    if ! as_owner "$bin/initdb" -D "$dir/data" -A trust -U "$ROLE" -E UTF8 --no-sync >"$dir/initdb.log" 2>&1; then
        cat "$dir/initdb.log" >&2
        rm -rf "$dir"
        die "initdb failed"
    fi
    # A random free port; a race with another process just means the next try.
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        port=$((20000 + RANDOM % 40000))
        if as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 60 \
            -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=400 -c fsync=off -c full_page_writes=off -c synchronous_commit=off" \
            start >/dev/null 2>&1; then
            started=yes
            break
        fi
    done
    if [[ -z "$started" ]]; then
        cat "$dir/log" >&2 || true
        rm -rf "$dir"
        die "the server did not start"
    fi
    echo "export ALPR_TEST_PG_URL='postgres://$ROLE@127.0.0.1:$port/postgres?sslmode=disable'"
    echo "export ALPR_TEST_PG_DIR='$dir'"
}

stop() {
    local dir="${1:-}"
    [[ -n "$dir" ]] || die "stop: which cluster (ALPR_TEST_PG_DIR)?"
    [[ "$(basename "$dir")" == alpr-test-pg.* && -d "$dir/data" ]] || die "stop: $dir is not a test cluster"
    as_owner "$(pg_bin)/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$dir"
}

run() {
    [[ $# -gt 0 ]] || die "run: which command?"
    local env
    env=$(start)
    eval "$env"
    trap 'stop "$ALPR_TEST_PG_DIR"' EXIT
    trap 'exit 130' INT TERM
    echo "test-pg: PostgreSQL for this run at $ALPR_TEST_PG_URL" >&2
    local status=0
    "$@" || status=$?
    exit "$status"
}

case "${1:-}" in
run)
    shift
    run "$@"
    ;;
start) start ;;
stop) stop "${2:-}" ;;
*) die "usage: $0 run CMD [ARGS...] | start | stop DIR" ;;
esac
