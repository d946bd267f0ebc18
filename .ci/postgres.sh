#!/usr/bin/env bash
# A throwaway PostgreSQL server for the store's contract tests.
#
#   eval "$(bash .ci/postgres.sh start)"   # installs Debian's postgresql if missing, starts a
#                                           # server on 127.0.0.1 in a temp dir, creates a
#                                           # database, prints `export OPTFORGE_TEST_PG_URL=...`
#                                           # and `export OPTFORGE_TEST_PG_DIR=...`
#   bash .ci/postgres.sh stop               # stops it and removes the temp dir
#
# Everything but the export lines goes to stderr, so `eval "$(...)"` sees only them.
# Runs as root (as CI does); the server itself runs as the `postgres` user.
set -euo pipefail

log() { echo "postgres.sh: $*" >&2; }

find_bin() {
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [[ -n "$d" && -x "$d/initdb" && -x "$d/pg_ctl" ]]; then echo "$d"; fi
}

start() {
    local bin
    bin=$(find_bin)
    if [[ -z "$bin" ]]; then
        log "installing Debian's postgresql"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2
        apt-get install -y -qq postgresql >&2
        bin=$(find_bin)
        [[ -n "$bin" ]] || { log "postgresql installed but no initdb found"; exit 1; }
    fi
    id -u postgres >/dev/null 2>&1 || { log "no 'postgres' user to run the server"; exit 1; }

    local dir port
    dir=$(mktemp -d /tmp/optforge-pg.XXXXXX)
    chown postgres:postgres "$dir"
    chmod 700 "$dir"
    # A free loopback port, chosen by the kernel.
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

    log "initdb in $dir/data"
    runuser -u postgres -- "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 \
        --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; exit 1; }
    log "starting the server on 127.0.0.1:$port"
    runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-h 127.0.0.1 -p $port -k $dir -c max_connections=200" start >&2 \
        || { cat "$dir/server.log" >&2; exit 1; }
    runuser -u postgres -- "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres optforge_test >&2
    echo "export OPTFORGE_TEST_PG_URL=postgresql+psycopg://postgres@127.0.0.1:$port/optforge_test"
    echo "export OPTFORGE_TEST_PG_DIR=$dir"
    log "ready"
}

stop() {
    local dir=${OPTFORGE_TEST_PG_DIR:-} bin
    if [[ -z "$dir" || ! -d "$dir/data" ]]; then log "nothing to stop"; return 0; fi
    bin=$(find_bin)
    runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >&2 || true
    rm -rf "$dir"
}

case "${1:-start}" in
    start) start ;;
    stop) stop ;;
    *) log "usage: $0 [start|stop]"; exit 2 ;;
esac
