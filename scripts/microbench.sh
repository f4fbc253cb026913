#!/usr/bin/env bash
# Compiles Benchmarks/ProtocolBench/main.swift with Sources/NATSProtocol/*.swift (swiftc -O, one module)
# and runs it. Prints parser MB/s, trie matches/s with and without the match cache, and encoder MB/s.
# Usage: scripts/microbench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/protocolbench.XXXXXX")"
trap 'rm -rf "$work"' EXIT
binary="$work/protocolbench"
# swiftc writes module files into the current folder: build inside the scratch folder.
(cd "$work" && swiftc -O -wmo -swift-version 6 -module-name ProtocolBench \
    "$root"/Sources/NATSProtocol/*.swift "$root"/Benchmarks/ProtocolBench/main.swift -o "$binary")
"$binary" "$@"
