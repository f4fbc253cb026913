#!/usr/bin/env bash
# Fuzzes the HTTP request parser with libFuzzer + AddressSanitizer for a bounded time.
# Usage: scripts/fuzz-http.sh [seconds]   (default 20). Exits non-zero on a crash or a build failure.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-20}"
out=.build-fuzz-http
mkdir -p "$out/corpus"
cp -n Fuzz/corpus/http/* "$out/corpus/" 2>/dev/null || true
swiftc -sanitize=fuzzer,address -parse-as-library -O -swift-version 6 -package-name microservices_nats \
    -module-name HTTPParserFuzz -o "$out/http-parser-fuzz" \
    Fuzz/HTTPParserFuzz/HTTPParserFuzz.swift \
    Sources/HTTPServer/HTTPHeaders.swift \
    Sources/HTTPServer/HTTPTypes.swift \
    Sources/HTTPServer/HTTPParseError.swift \
    Sources/HTTPServer/HTTPRequestParser.swift
# The working corpus grows in $out/corpus; Fuzz/corpus/http holds the seeds only.
"$out/http-parser-fuzz" -max_total_time="$seconds" -max_len=4096 -artifact_prefix="$out/" \
    "$out/corpus" Fuzz/corpus/http
