#!/usr/bin/env bash
# Runs every test. Fixture tests read ../shared/fixtures (or $LORACRAFT_FIXTURES) and skip,
# saying so, when it is absent.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
# libtorch warns once per thread that NNPACK does not support this CPU: noise that buries results
export TORCH_CPP_LOG_LEVEL=ERROR
# the third-party A1111 client test runs an npm package: install it once (Node from `apt-get install nodejs npm`)
if command -v npm >/dev/null && [ ! -d tests/a1111-client/node_modules/a1111-webui-api ]; then
    (cd tests/a1111-client && npm ci --no-audit --no-fund --loglevel=error) || echo "warning: npm ci in tests/a1111-client failed; the A1111 client test will fail" >&2
fi
log=$(mktemp)
dotnet test tests/LoraCraft.Tests/LoraCraft.Tests.csproj -c Release --logger "console;verbosity=normal" "$@" 2>&1 \
    | grep --line-buffered -v "NNPACK.cpp" | tee "$log"
status=${PIPESTATUS[0]}
# the failures again at the end, where a truncated CI log still shows them
if grep -q "^ *Failed [A-Za-z]" "$log"; then
    echo "--- failed tests ---"
    grep -A4 "^ *Failed [A-Za-z]" "$log" | head -200
fi
# one plain summary line that any CI reader understands
awk '/^ *Passed: *[0-9]+/{p=$2} /^ *Failed: *[0-9]+/{f=$2} /^ *Skipped: *[0-9]+/{s=$2}
     END{ if (p != "") printf "%d passed, %d failed, %d skipped\n", p, f + 0, s + 0 }' "$log"
rm -f "$log"
exit "$status"
