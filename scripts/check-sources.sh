#!/bin/bash
# Source rules the compiler cannot enforce by itself. Fails loudly with the offending lines.
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0

# 1. The pure core imports no C module, no Glibc and no Foundation.
if grep -nE '^\s*(@_exported\s+)?((public|package|internal)\s+)?import\s+(Glibc|Foundation|FoundationEssentials|Dispatch|C[A-Z][A-Za-z]*)\b' -r Sources/RNMCore; then
    echo "error: Sources/RNMCore must stay pure (no C modules, no Glibc, no Foundation)"; fail=1
fi

# 2. No target imports full Foundation (it drags in ICU); FoundationEssentials is fine.
if grep -nE '^\s*((public|package|internal)\s+)?import\s+Foundation\s*$' -r Sources Plugins 2>/dev/null; then
    echo "error: import FoundationEssentials, not Foundation"; fail=1
fi

# 3. Every @unchecked Sendable / nonisolated(unsafe) says why it is safe, on the line above or the same line.
while IFS=: read -r file line _; do
    prev=$(sed -n "$((line - 1))p" "$file")
    cur=$(sed -n "${line}p" "$file")
    if ! [[ "$prev" =~ // || "$cur" =~ // ]]; then
        echo "error: $file:$line: @unchecked Sendable / nonisolated(unsafe) without a comment saying why it is safe"; fail=1
    fi
done < <(grep -nE '@unchecked Sendable|nonisolated\(unsafe\)' -r --include='*.swift' Sources Plugins Tests Benchmarks 2>/dev/null \
    | grep -vE '^[^:]+:[0-9]+:\s*//' || true)

# 4. The built binaries do not link full Foundation or ICU.
for bin in .build/debug/rnmd .build/debug/librnm-docker.so; do
    if [ -x "$bin" ] && ldd "$bin" | grep -E 'libFoundation\.so|libFoundationInternationalization|ICU'; then
        echo "error: $bin links full Foundation/ICU"; fail=1
    fi
done

[ $fail -eq 0 ] && echo "source checks: ok"
exit $fail
