#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs PostgreSQL if it is missing, starts a throwaway
# cluster on a free loopback port, runs `dotnet test` against it and always tears the cluster down.
# CI runs this as root with no services running; a developer can run it as themselves.
set -euo pipefail

started_at=$SECONDS
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo_root"

log() { printf '[test.sh] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

is_root() { [[ "$(id -u)" == 0 ]]; }

# The versioned Debian folder is preferred: /usr/bin only has wrappers, without initdb.
find_pg_bin() {
    if [[ -n "${SPINE_PG_BIN:-}" && -x "${SPINE_PG_BIN}/pg_ctl" && -x "${SPINE_PG_BIN}/initdb" ]]; then
        printf '%s\n' "$SPINE_PG_BIN"
        return
    fi
    local newest
    newest="$(ls -d /usr/lib/postgresql/*/bin/pg_ctl 2>/dev/null | sort -V | tail -n 1 || true)"
    if [[ -n "$newest" ]]; then
        dirname "$newest"
    fi
}

pg_bin="$(find_pg_bin)"
if [[ -z "$pg_bin" ]]; then
    log "PostgreSQL server binaries not found; installing the postgresql package"
    if is_root; then
        as_admin=()
    elif command -v sudo >/dev/null 2>&1; then
        as_admin=(sudo)
    else
        die "PostgreSQL is not installed and this script is not root and has no sudo; run 'apt-get install postgresql' as root, or set SPINE_PG_BIN to a folder holding pg_ctl and initdb"
    fi
    command -v apt-get >/dev/null 2>&1 || die "PostgreSQL is not installed and apt-get is not available; install PostgreSQL and set SPINE_PG_BIN to its bin folder"
    ${as_admin[@]+"${as_admin[@]}"} apt-get update
    ${as_admin[@]+"${as_admin[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql
    pg_bin="$(find_pg_bin)"
    [[ -n "$pg_bin" ]] || die "installed postgresql but found no /usr/lib/postgresql/*/bin/pg_ctl"
fi
log "using PostgreSQL binaries in $pg_bin ($("$pg_bin/postgres" --version))"

# initdb and postgres refuse to run as root, so as root they run as the postgres system user.
as_pg=()
pg_tmp_parent="${TMPDIR:-/tmp}"
if is_root; then
    id -u postgres >/dev/null 2>&1 || die "running as root but there is no 'postgres' system user to run PostgreSQL as ('apt-get install postgresql' creates it)"
    command -v runuser >/dev/null 2>&1 || die "running as root but runuser (util-linux) is missing"
    as_pg=(runuser -u postgres --)
    # /tmp is traversable by every user; a TMPDIR under /root would not be.
    pg_tmp_parent=/tmp
fi

# Runs a PostgreSQL binary as the right user, from a folder that user may enter (our cwd may be under /root).
run_pg() {
    (cd "$pg_tmp" && ${as_pg[@]+"${as_pg[@]}"} "$@")
}

pg_tmp="$(mktemp -d "$pg_tmp_parent/spine-test-pg.XXXXXX")"
pg_data="$pg_tmp/data"
pg_log="$pg_tmp/postgres.log"

cleanup() {
    local rc=$?
    set +e
    if [[ -f "$pg_data/postmaster.pid" ]]; then
        log "stopping PostgreSQL"
        run_pg "$pg_bin/pg_ctl" -D "$pg_data" -m fast -w -t 30 stop >/dev/null 2>&1 \
            || run_pg "$pg_bin/pg_ctl" -D "$pg_data" -m immediate -w -t 30 stop >/dev/null 2>&1
    fi
    rm -rf "$pg_tmp"
    exit "$rc"
}
trap cleanup EXIT
# Turn signals into a normal exit so the EXIT trap runs and the cluster never outlives the script.
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

if is_root; then
    chown postgres: "$pg_tmp"
fi

log "initdb in $pg_data"
if ! run_pg "$pg_bin/initdb" -D "$pg_data" -A trust -U postgres -E UTF8 --no-locale --no-sync >"$pg_tmp/initdb.log" 2>&1; then
    cat "$pg_tmp/initdb.log" >&2
    die "initdb failed"
fi

# Pure bash probe (python3 may be absent): a port nobody answers on is free. Another process may still grab it
# before the postmaster binds, so a failed start is retried on another port.
port_is_free() { ! (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pick_port() {
    local base=$((20000 + RANDOM % 30000)) i p
    for ((i = 0; i < 200; i++)); do
        p=$((base + i))
        if port_is_free "$p"; then
            printf '%s\n' "$p"
            return 0
        fi
    done
    return 1
}

port=""
for attempt in 1 2 3 4 5; do
    candidate="$(pick_port)" || die "found no free loopback port"
    if run_pg "$pg_bin/pg_ctl" -D "$pg_data" -l "$pg_log" -w -t 60 \
        -o "-p $candidate -c listen_addresses=127.0.0.1 -k '$pg_tmp' -c max_connections=200 -c shared_buffers=128MB" \
        start >/dev/null; then
        port="$candidate"
        break
    fi
    log "PostgreSQL did not start on port $candidate (attempt $attempt); server log:"
    tail -n 20 "$pg_log" >&2 || true
done
[[ -n "$port" ]] || die "PostgreSQL failed to start"
log "PostgreSQL running on 127.0.0.1:$port"

"$pg_bin/createdb" -h 127.0.0.1 -p "$port" -U postgres spine_test

export SPINE_TEST_CONNECTION="Host=127.0.0.1;Port=$port;Username=postgres;Database=spine_test;Include Error Detail=true"
export SPINE_PG_BIN="$pg_bin"
export DOTNET_CLI_TELEMETRY_OPTOUT=1
export DOTNET_NOLOGO=1

test_output="$pg_tmp/dotnet-test.log"
set +e
dotnet test Orleans.sln -c Release --logger "console;verbosity=normal" 2>&1 | tee "$test_output"
rc=${PIPESTATUS[0]}
set -e

# One plain "N passed, N failed, N skipped" line summed over the test assemblies' summaries
# ("Passed!  - Failed: 0, Passed: 12, Skipped: 0, Total: 12, ..."), so CI can tell that tests ran.
awk '
    /(Passed|Failed)! +- +Failed: +[0-9]+, +Passed: +[0-9]+, +Skipped: +[0-9]+/ {
        line = $0
        sub(/.*Failed: +/, "", line); failed += line + 0
        line = $0
        sub(/.*Passed: +/, "", line); passed += line + 0
        line = $0
        sub(/.*Skipped: +/, "", line); skipped += line + 0
        found = 1
    }
    END { if (found) printf "%d passed, %d failed, %d skipped\n", passed, failed, skipped }
' "$test_output"

elapsed=$((SECONDS - started_at))
log "dotnet test exited with $rc after $((elapsed / 60))m$((elapsed % 60))s"
exit "$rc"
