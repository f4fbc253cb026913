#!/usr/bin/env bash
# Fuzzes the parsers with libFuzzer + AddressSanitizer for a bounded time each: ClientParser and
# ServerParser (NATSProtocol), HTTPRequestParser (HTTPServer), and JetStream's file store recovery
# (jsstore: arbitrary bytes as block files) and API request decoders (jsapi: StreamConfig.decode).
# Usage: scripts/fuzz.sh [seconds] [client|server|http|jsstore|jsapi|all]   (default: 30 seconds each, all).
# Each target is built into .build-fuzz/ with swiftc directly (no SwiftPM), from its fuzz entry point
# and the parser's own sources only; the JetStream targets are compiled into the JetStream module
# (so they reach its internals), over Formats, NATSProtocol and POSIXFiles built as modules first,
# and the CSystem C shim (compiled with clang, imported through a module map written here).
# Every target selected runs even when an earlier one fails.
# Exits non-zero on a build failure or when a target finds a crash (its input is left in
# .build-fuzz/<target>-crash-...), 2 for a usage error.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
seconds="${1:-30}"
which="${2:-all}"
usage="usage: $0 [seconds] [client|server|http|jsstore|jsapi|all]"
[[ $seconds =~ ^[0-9]+$ ]] || { echo "$usage" >&2; exit 2; }
case "$which" in
    client|server|http|jsstore|jsapi|all) ;;
    *) echo "$usage" >&2; exit 2 ;;
esac
out=.build-fuzz
mkdir -p "$out" || exit 1
nats_sources=(Sources/NATSProtocol/ParserSupport.swift Sources/NATSProtocol/ClientParser.swift Sources/NATSProtocol/ServerParser.swift)
http_sources=(Sources/HTTPServer/HTTPHeaders.swift Sources/HTTPServer/HTTPTypes.swift
              Sources/HTTPServer/HTTPParseError.swift Sources/HTTPServer/HTTPRequestParser.swift)
failed=()
fuzz_flags=("-sanitize=fuzzer,address" -parse-as-library -O -swift-version 6 -package-name microservices_nats)

# run NAME MODULE SEED_DIR SWIFTC_ARGUMENTS...: builds one target and fuzzes it for $seconds.
run() {
    local name=$1 module=$2 seeds=$3
    shift 3
    echo "== building $name"
    if ! swiftc "${fuzz_flags[@]}" -module-name "$module" -o "$out/$name" "$@"; then
        failed+=("$name (build)")
        return
    fi
    mkdir -p "$out/corpus-$name"
    cp -n "$seeds"/* "$out/corpus-$name/" 2> /dev/null || true
    echo "== fuzzing $name for ${seconds}s"
    # The working corpus grows in $out/corpus-$name; $seeds holds the seeds only. The Swift
    # backtracer is off so libFuzzer's own crash handler saves the input at once.
    SWIFT_BACKTRACE=enable=no "$out/$name" -max_total_time="$seconds" -max_len=4096 -artifact_prefix="$out/$name-" \
        "$out/corpus-$name" "$seeds" || failed+=("$name")
}

if [[ $which == client || $which == all ]]; then
    run client-parser-fuzz ClientParserFuzz Fuzz/corpus/client Fuzz/ClientParserFuzz/main.swift "${nats_sources[@]}"
fi
if [[ $which == server || $which == all ]]; then
    run server-parser-fuzz ServerParserFuzz Fuzz/corpus/server Fuzz/ServerParserFuzz/main.swift "${nats_sources[@]}"
fi
if [[ $which == http || $which == all ]]; then
    # The HTTP parser's sources use `package` access: they need the package name.
    run http-parser-fuzz HTTPParserFuzz Fuzz/corpus/http Fuzz/HTTPParserFuzz/HTTPParserFuzz.swift "${http_sources[@]}"
fi

# module NAME: builds Sources/NAME as a module ($out/modules/NAME.swiftmodule and NAME.o), instrumented
# like the targets, for the JetStream targets to import and link.
module() {
    local name=$1
    local sources=()
    mapfile -t sources < <(find "Sources/$name" -name '*.swift' | sort)
    swiftc "${fuzz_flags[@]}" -wmo -module-name "$name" -I "$out/modules" \
        -emit-module -emit-module-path "$out/modules/$name.swiftmodule" -c -o "$out/modules/$name.o" "${sources[@]}"
}

# c_module: builds the CSystem shim ($out/modules/CSystem.o) and a module map for it.
c_module() {
    printf 'module CSystem {\n    header "%s"\n    export *\n}\n' "$PWD/Sources/CSystem/include/CSystem.h" \
        > "$out/modules/CSystem.modulemap" &&
        clang -O2 -fsanitize=address -I Sources/CSystem/include -c -o "$out/modules/CSystem.o" Sources/CSystem/CSystem.c
}

if [[ $which == jsstore || $which == jsapi || $which == all ]]; then
    mkdir -p "$out/modules" || exit 1
    if module Formats && module NATSProtocol && module POSIXFiles && c_module; then
        mapfile -t js_sources < <(find Sources/JetStream -name '*.swift' | sort)
        js_inputs=(-I "$out/modules" -Xcc -fmodule-map-file="$out/modules/CSystem.modulemap" "${js_sources[@]}"
                   "$out/modules/Formats.o" "$out/modules/NATSProtocol.o" "$out/modules/POSIXFiles.o"
                   "$out/modules/CSystem.o")
        if [[ $which == jsstore || $which == all ]]; then
            run jetstream-store-fuzz JetStream Fuzz/corpus/jsstore Fuzz/JetStreamStoreFuzz/JetStreamStoreFuzz.swift "${js_inputs[@]}"
        fi
        if [[ $which == jsapi || $which == all ]]; then
            run jetstream-api-fuzz JetStream Fuzz/corpus/jsapi Fuzz/JetStreamAPIFuzz/JetStreamAPIFuzz.swift "${js_inputs[@]}"
        fi
    else
        failed+=("jetstream modules (build)")
    fi
fi

if ((${#failed[@]})); then
    echo "fuzz: FAILED: ${failed[*]}" >&2
    exit 1
fi
