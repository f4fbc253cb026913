#!/usr/bin/env bash
# Compiles Benchmarks/ProtocolBench/main.swift with Sources/NATSProtocol/*.swift (swiftc -O, one module)
# and runs it. Prints parser MB/s (when ClientParser.swift exists), trie matches/s with and without the
# match cache, and encoder MB/s. Usage: scripts/microbench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
binary="$(mktemp "${TMPDIR:-/tmp}/protocolbench.XXXXXX")"
trap 'rm -f "$binary"' EXIT
flags=()
if [[ -f Sources/NATSProtocol/ClientParser.swift ]]; then
    flags+=(-D HAVE_CLIENT_PARSER)
fi
swiftc -O -wmo -swift-version 6 -module-name ProtocolBench ${flags[@]+"${flags[@]}"} \
    Sources/NATSProtocol/*.swift Benchmarks/ProtocolBench/main.swift -o "$binary"
"$binary" "$@"
