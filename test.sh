#!/usr/bin/env bash
# Runs every test. Fixture tests read ../shared/fixtures (or $LORACRAFT_FIXTURES) and skip,
# saying so, when it is absent.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1
dotnet test tests/LoraCraft.Tests/LoraCraft.Tests.csproj -c Release --logger "console;verbosity=normal" "$@"
