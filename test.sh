#!/usr/bin/env bash
# Runs every test. Fixture tests read ../shared/fixtures (or $LORACRAFT_FIXTURES) and skip,
# saying so, when it is absent.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
log=$(mktemp)
dotnet test tests/LoraCraft.Tests/LoraCraft.Tests.csproj -c Release --logger "console;verbosity=normal" "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# one plain summary line that any CI reader understands
awk '/^ *Passed: *[0-9]+/{p=$2} /^ *Failed: *[0-9]+/{f=$2} /^ *Skipped: *[0-9]+/{s=$2}
     END{ if (p != "") printf "%d passed, %d failed, %d skipped\n", p, f + 0, s + 0 }' "$log"
rm -f "$log"
exit "$status"
