#!/usr/bin/env bash
# Fuzzes every parser of untrusted input with libFuzzer + AddressSanitizer for a bounded time each:
#   client, server  ClientParser and ServerParser (NATSProtocol);
#   http            HTTPRequestParser (HTTPServer);
#   jsstore, jsapi  JetStream's file store recovery (arbitrary bytes as block files) and API request
#                   decoders (StreamConfig.decode and the rest);
#   json            Formats' JSON reader and writer (a round trip through the writer);
#   config          the nats.conf parser (NATSConfig) and the broker's Options.apply on its result;
#   jwt             ServiceKit's JWTAuthority.verify (raw tokens, and tokens signed here around
#                   fuzzed header and claims JSON);
#   dataproc        the data-processing service's CSV reader and expression language;
#   monitor         the monitoring query string and what /connz, /subsz, /accountz and /jsz make
#                   of it, against a broker running in the fuzzer's process.
# Usage: scripts/fuzz.sh [seconds] [client|server|http|jsstore|jsapi|json|config|jwt|dataproc|monitor|all]
#   (default: 30 seconds each, all). With `all`, the last five targets run for half the seconds
#   each (at least 5), so `scripts/fuzz.sh 20` stays within about four minutes with its builds.
# Each target is built into .build-fuzz/ with swiftc directly (no SwiftPM): the NATS and HTTP
# targets from their entry point and the parser's own sources only; jwt and dataproc are compiled
# into the module they test (ServiceKit, DataProcessingService) from the files the parsers need
# only, so they reach its internals; the others import the modules they test (JetStream, Formats,
# NATSServer and its dependencies), built into .build-fuzz/modules with -enable-testing,
# instrumented like the targets, and kept for the next run while their sources do not change. The
# CSystem C shim is compiled with clang and imported through a module map written here.
# Every input gets at most 10 seconds (-timeout, so a hang is found) and 2 GB of memory
# (-rss_limit_mb; one allocation at most 1 GB, -malloc_limit_mb).
# FUZZ_ARGS adds libFuzzer options to every run (e.g. FUZZ_ARGS=-print_final_stats=1).
# Every target selected runs even when an earlier one fails.
# Exits non-zero on a build failure or when a target finds a crash (its input is left in
# .build-fuzz/<target>-crash-... or -timeout-/-oom-), 2 for a usage error.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
seconds="${1:-30}"
which="${2:-all}"
usage="usage: $0 [seconds] [client|server|http|jsstore|jsapi|json|config|jwt|dataproc|monitor|all]"
[[ $seconds =~ ^[0-9]+$ ]] || { echo "$usage" >&2; exit 2; }
case "$which" in
    client|server|http|jsstore|jsapi|json|config|jwt|dataproc|monitor|all) ;;
    *) echo "$usage" >&2; exit 2 ;;
esac
# The targets added last share the budget of a full run: half the seconds each.
newer_seconds=$seconds
if [[ $which == all ]]; then
    newer_seconds=$((seconds / 2 < 5 ? 5 : seconds / 2))
fi
out=.build-fuzz
mkdir -p "$out" || exit 1
nats_sources=(Sources/NATSProtocol/ParserSupport.swift Sources/NATSProtocol/ClientParser.swift Sources/NATSProtocol/ServerParser.swift)
http_sources=(Sources/HTTPServer/HTTPHeaders.swift Sources/HTTPServer/HTTPTypes.swift
              Sources/HTTPServer/HTTPParseError.swift Sources/HTTPServer/HTTPRequestParser.swift)
failed=()
fuzz_flags=("-sanitize=fuzzer,address" -parse-as-library -O -swift-version 6 -package-name microservices_nats)

# run NAME MODULE SEED_DIR SWIFTC_ARGUMENTS...: builds one target and fuzzes it for $seconds
# (or $run_seconds when set).
run() {
    local name=$1 module=$2 seeds=$3 time=${run_seconds:-$seconds}
    shift 3
    echo "== building $name"
    if ! swiftc "${fuzz_flags[@]}" -module-name "$module" -o "$out/$name" "$@"; then
        failed+=("$name (build)")
        return
    fi
    mkdir -p "$out/corpus-$name"
    cp -n "$seeds"/* "$out/corpus-$name/" 2> /dev/null || true
    echo "== fuzzing $name for ${time}s"
    # The working corpus grows in $out/corpus-$name; $seeds holds the seeds only. The Swift
    # backtracer is off so libFuzzer's own crash handler saves the input at once.
    SWIFT_BACKTRACE=enable=no "$out/$name" -max_total_time="$time" -max_len=4096 -timeout=10 \
        -rss_limit_mb=2048 -malloc_limit_mb=1024 -artifact_prefix="$out/$name-" ${FUZZ_ARGS:-} \
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

# module NAME: builds Sources/NAME as a module ($out/modules/NAME.swiftmodule and NAME.o), at most
# once per run, instrumented like the targets and with -enable-testing (so a target may reach
# internals), for the targets to import and link. Call it for a module's dependencies first (the
# lists below are in dependency order) and run c_module before. A module an earlier run left is
# kept while its stamp is newer than its sources, this script and the modules taken before it in
# this run (a rebuilt dependency may change what it compiles against).
# NKeys imports the system OpenSSL through our COpenSSL module map (its header is beside it).
openssl_map=$PWD/Sources/COpenSSL/module.modulemap
declare -A built_modules=()
taken=()
module() {
    local name=$1 object="$out/modules/$1.o" stamp="$out/modules/$1.built" fresh=0 other
    [[ -n ${built_modules[$name]:-} ]] && return 0
    # The stamp, not the object, says when: swiftc leaves an unchanged object's time as it was.
    if [[ -f $stamp && -f $object && -f $out/modules/$name.swiftmodule && ! scripts/fuzz.sh -nt $stamp ]] &&
        [[ -z $(find "Sources/$name" -newer "$stamp" -print -quit) ]]; then
        fresh=1
        for other in "${taken[@]}"; do [[ $out/modules/$other.built -nt $stamp ]] && fresh=0; done
    fi
    if ((!fresh)); then
        rm -f "$stamp"
        local sources=()
        mapfile -t sources < <(find "Sources/$name" -name '*.swift' | sort)
        echo "== building module $name"
        swiftc "${fuzz_flags[@]}" -enable-testing -wmo -module-name "$name" -I "$out/modules" \
            -Xcc -fmodule-map-file="$out/modules/CSystem.modulemap" -Xcc -fmodule-map-file="$openssl_map" \
            -emit-module -emit-module-path "$out/modules/$name.swiftmodule" -c -o "$object" "${sources[@]}" &&
            touch "$stamp" || return 1
    fi
    built_modules[$name]=1
    taken+=("$name")
}

# c_module: builds the CSystem shim ($out/modules/CSystem.o) and a module map for it, once per run.
c_module() {
    [[ -n ${built_modules[CSystem]:-} ]] && return 0
    mkdir -p "$out/modules" &&
    printf 'module CSystem {\n    header "%s"\n    export *\n}\n' "$PWD/Sources/CSystem/include/CSystem.h" \
        > "$out/modules/CSystem.modulemap" &&
        clang -O2 -fsanitize=address -I Sources/CSystem/include -c -o "$out/modules/CSystem.o" Sources/CSystem/CSystem.c &&
        built_modules[CSystem]=1
}

if [[ $which == jsstore || $which == jsapi || $which == all ]]; then
    if c_module && module Formats && module NATSProtocol && module POSIXFiles && module JetStream; then
        js_inputs=(-I "$out/modules" -Xcc -fmodule-map-file="$out/modules/CSystem.modulemap"
                   "$out/modules/JetStream.o" "$out/modules/Formats.o" "$out/modules/NATSProtocol.o"
                   "$out/modules/POSIXFiles.o" "$out/modules/CSystem.o")
        if [[ $which == jsstore || $which == all ]]; then
            run jetstream-store-fuzz JetStreamStoreFuzz Fuzz/corpus/jsstore Fuzz/JetStreamStoreFuzz/JetStreamStoreFuzz.swift "${js_inputs[@]}"
        fi
        if [[ $which == jsapi || $which == all ]]; then
            run jetstream-api-fuzz JetStreamAPIFuzz Fuzz/corpus/jsapi Fuzz/JetStreamAPIFuzz/JetStreamAPIFuzz.swift "${js_inputs[@]}"
        fi
    else
        failed+=("jetstream modules (build)")
    fi
fi

# The targets below share the halved budget of a full run.
run_seconds=$newer_seconds
if [[ $which == json || $which == jwt || $which == dataproc || $which == all ]]; then
    if c_module && module Formats; then
        if [[ $which == json || $which == all ]]; then
            run json-fuzz JSONFuzz Fuzz/corpus/json Fuzz/JSONFuzz/JSONFuzz.swift \
                -I "$out/modules" "$out/modules/Formats.o"
        fi
        if [[ $which == jwt || $which == all ]]; then
            run jwt-fuzz ServiceKit Fuzz/corpus/jwt Fuzz/JWTFuzz/JWTFuzz.swift \
                Sources/ServiceKit/JWT.swift Sources/ServiceKit/JSONValue.swift Sources/ServiceKit/Crypto/*.swift \
                -I "$out/modules" "$out/modules/Formats.o"
        fi
        if [[ $which == dataproc || $which == all ]]; then
            dp=Sources/DataProcessingService
            run dataproc-fuzz DataProcessingService Fuzz/corpus/dataproc Fuzz/DataProcessingFuzz/DataProcessingFuzz.swift \
                "$dp/CSV.swift" "$dp/Expression.swift" "$dp/Value.swift" "$dp/DatasetTime.swift" \
                -I "$out/modules" "$out/modules/Formats.o"
        fi
    else
        failed+=("formats module (build)")
    fi
fi
if [[ $which == config || $which == monitor || $which == all ]]; then
    # NATSServer and every module it imports.
    broker_modules=(Formats NATSProtocol POSIXFiles NATSConfig EventLoop HTTPServer JetStream NKeys NATSServer)
    built=1
    c_module || built=0
    for name in "${broker_modules[@]}"; do
        ((built)) && { module "$name" || built=0; }
    done
    if ((built)); then
        broker_inputs=(-I "$out/modules" -Xcc -fmodule-map-file="$out/modules/CSystem.modulemap"
                       -Xcc -fmodule-map-file="$openssl_map" -lssl -lcrypto "$out/modules/CSystem.o")
        for name in "${broker_modules[@]}"; do broker_inputs+=("$out/modules/$name.o"); done
        if [[ $which == config || $which == all ]]; then
            run config-fuzz ConfigFuzz Fuzz/corpus/config Fuzz/ConfigFuzz/ConfigFuzz.swift "${broker_inputs[@]}"
        fi
        if [[ $which == monitor || $which == all ]]; then
            run monitor-fuzz MonitorFuzz Fuzz/corpus/monitor Fuzz/MonitorFuzz/MonitorFuzz.swift "${broker_inputs[@]}"
        fi
    else
        failed+=("broker modules (build)")
    fi
fi

if ((${#failed[@]})); then
    echo "fuzz: FAILED: ${failed[*]}" >&2
    exit 1
fi
