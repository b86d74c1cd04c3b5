#!/usr/bin/env bash
# The tree's C is what clang-format (Debian 12's, version 14) makes of it, with .clang-format.
#   scripts/check-style.sh          list the files clang-format would change; exit 1 if any
#   scripts/check-style.sh --fix    rewrite them in place
set -uo pipefail
cd "$(dirname "$0")/.."
cf=${CLANG_FORMAT:-clang-format}
if ! command -v "$cf" >/dev/null; then
    echo "check-style: $cf not found (scripts/setup.sh installs clang-format)" >&2
    exit 77
fi
fix=0
[ "${1:-}" = "--fix" ] && fix=1
bad=0
while IFS= read -r f; do
    if [ "$fix" = 1 ]; then
        "$cf" --style=file -i "$f"
    elif ! "$cf" --style=file "$f" | cmp -s "$f" -; then
        echo "check-style: $f differs from clang-format's output:"
        "$cf" --style=file "$f" | diff -u "$f" - | head -20
        bad=$((bad + 1))
    fi
done < <(git ls-files '*.c' '*.h' 2>/dev/null || find lib dpdk_app tests -name '*.[ch]')
if [ "$bad" -gt 0 ]; then
    echo "check-style: $bad file(s) need scripts/check-style.sh --fix" >&2
    exit 1
fi
echo "check-style: every C file matches .clang-format ($("$cf" --version))"
