#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs PostgreSQL if it is missing, then runs `dotnet test`.
# The tests start their own throwaway PostgreSQL (Spine.Local's LocalPostgresServer: a free loopback port,
# a temp folder, run as the postgres user when root) and stop it when they end, pass or fail.
# CI runs this as root with no services running; a developer can run it as themselves.
# SPINE_TEST_CONNECTION (an owner connection string) makes the tests use that server instead.
set -euo pipefail

started_at=$SECONDS
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo_root"

log() { printf '[test.sh] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# What LocalPostgresServer looks for: $SPINE_PG_BIN, else the versioned Debian folder (/usr/bin only has
# wrappers, without initdb), else PATH.
have_pg() {
    if [[ -n "${SPINE_PG_BIN:-}" ]]; then
        [[ -x "$SPINE_PG_BIN/pg_ctl" && -x "$SPINE_PG_BIN/initdb" && -x "$SPINE_PG_BIN/postgres" ]]
        return
    fi
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || { command -v initdb && command -v pg_ctl; } >/dev/null 2>&1
}

install_packages() {
    local as_admin=()
    if [[ "$(id -u)" != 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "$* missing and this script is not root and has no sudo; run 'apt-get install $*' as root"
        as_admin=(sudo)
    fi
    command -v apt-get >/dev/null 2>&1 || die "$* missing and apt-get is not available; install it yourself"
    log "installing $*"
    ${as_admin[@]+"${as_admin[@]}"} apt-get update
    ${as_admin[@]+"${as_admin[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
}

if [[ -z "${SPINE_TEST_CONNECTION:-}" ]]; then
    missing=()
    have_pg || missing+=(postgresql)
    # As root, initdb and postgres run as the postgres system user through runuser (util-linux).
    if [[ "$(id -u)" == 0 ]] && ! command -v runuser >/dev/null 2>&1; then
        missing+=(util-linux)
    fi
    if ((${#missing[@]} > 0)); then
        install_packages "${missing[@]}"
    fi
    have_pg || die "installed postgresql but found no PostgreSQL server binaries; set SPINE_PG_BIN to the folder holding pg_ctl and initdb"
    log "the tests start their own PostgreSQL"
else
    log "using the PostgreSQL server named by SPINE_TEST_CONNECTION"
fi

# The console's browser tests drive Debian's Chromium through Playwright (ExecutablePath; no browser is downloaded).
if [[ -z "${SPINE_CHROMIUM:-}" ]] && ! command -v chromium >/dev/null 2>&1; then
    install_packages chromium
fi
command -v "${SPINE_CHROMIUM:-chromium}" >/dev/null 2>&1 || [[ -x "${SPINE_CHROMIUM:-}" ]] || die "installed chromium but found no chromium; set SPINE_CHROMIUM to its executable"

export DOTNET_CLI_TELEMETRY_OPTOUT=1
export DOTNET_NOLOGO=1

test_output="$(mktemp "${TMPDIR:-/tmp}/spine-dotnet-test.XXXXXX")"
trap 'rm -f "$test_output"' EXIT
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

# The failed tests again, each with its message and stack, last: a log read from its tail shows them.
awk '
    /^  (Passed|Skipped) / { keep = 0 }
    /^  Failed / { keep = 1; failures++; lines = 0; print "" }
    /^\[xUnit.net/ || /^Test Run / || /^Total tests/ { keep = 0 }
    keep && lines < 80 { print; lines++ }
    END { if (failures) printf "\n%d failed test(s), repeated above\n", failures }
' "$test_output" >&2

elapsed=$((SECONDS - started_at))
log "dotnet test exited with $rc after $((elapsed / 60))m$((elapsed % 60))s"
exit "$rc"
