#!/usr/bin/env bash
# Fuzzes ClientParser and ServerParser with libFuzzer + AddressSanitizer for a bounded time each.
# Usage: scripts/fuzz.sh [seconds] [client|server|all]   (default: 30 seconds, all).
# Builds into .build-fuzz/ with swiftc directly (no SwiftPM), from the parser sources only.
# Exits non-zero on a build failure or when a target finds a crash (its input is left in .build-fuzz/).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-30}"
which="${2:-all}"
out=.build-fuzz
mkdir -p "$out"
sources=(Sources/NATSProtocol/ParserSupport.swift Sources/NATSProtocol/ClientParser.swift Sources/NATSProtocol/ServerParser.swift)

run() {  # name  module  main  seed-dir
    local name="$1" module="$2" main="$3" seeds="$4"
    echo "== building $name"
    swiftc -sanitize=fuzzer,address -parse-as-library -O -swift-version 6 \
        -module-name "$module" -o "$out/$name" "$main" "${sources[@]}"
    mkdir -p "$out/corpus-$name"
    cp -n "$seeds"/* "$out/corpus-$name/" 2>/dev/null || true
    echo "== fuzzing $name for ${seconds}s"
    # The working corpus grows in $out/corpus-$name; $seeds holds the seeds only. The Swift backtracer is
    # off so libFuzzer's own crash handler saves the input at once.
    SWIFT_BACKTRACE=enable=no "$out/$name" -max_total_time="$seconds" -max_len=4096 -artifact_prefix="$out/$name-" \
        "$out/corpus-$name" "$seeds"
}

case "$which" in
    client|all) run client-parser-fuzz ClientParserFuzz Fuzz/ClientParserFuzz/main.swift Fuzz/corpus/client ;;
esac
case "$which" in
    server|all) run server-parser-fuzz ServerParserFuzz Fuzz/ServerParserFuzz/main.swift Fuzz/corpus/server ;;
    client) ;;
    *) echo "usage: $0 [seconds] [client|server|all]" >&2; exit 2 ;;
esac
