#!/usr/bin/env bash
# Install what the tests need, build, and run every suite except soak, then the golden suite
# again on an ASan+UBSan build of the engine (build-asan).
#   scripts/test.sh                 all suites, then the ASan golden step
#   scripts/test.sh unit golden     only these suites
#   scripts/test.sh asan            only the ASan golden step (with others: also those suites)
# Ends with one line "N passed, N failed, N skipped" that counts both build directories.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test || { echo "0 passed, 1 failed, 0 skipped"; exit 1; }

suites=()
asan=1
if [ "$#" -gt 0 ]; then
    asan=0
    for s in "$@"; do
        if [ "$s" = asan ]; then asan=1; else suites+=("$s"); fi
    done
fi
args=(--no-rebuild --print-errorlogs --num-processes 1)
logs=()
rc=0
if [ "$#" -eq 0 ] || [ "${#suites[@]}" -gt 0 ]; then
    if [ "${#suites[@]}" -gt 0 ]; then
        for s in "${suites[@]}"; do args+=(--suite "$s"); done
    else
        args+=(--no-suite soak)
    fi
    meson test -C build "${args[@]}" || rc=1
    logs+=(build/meson-logs/testlog.json)
fi

# The golden suite on an engine built with -fsanitize=address,undefined. The EAL runs as in the
# plain suite (--no-huge -m 512, --in-memory, a --file-prefix per run), which ASan's shadow
# mapping leaves alone. halt_on_error: the first report ends the engine (the test then sees a
# non-zero exit); log_path: reports also go to files, and any file there fails the step even if
# a test swallowed the exit status. Leak detection is on: the engine frees what it allocates
# and DPDK's own allocations at rte_eal_cleanup() are not reported (measured: none on the
# corpus). ~10 min on 2 cores: the build ~1.5 min of CPU, the suite 8.5 min at load ~10 (README).
if [ "$asan" = 1 ]; then
    echo "== asan: golden suite on an ASan+UBSan engine (build-asan) =="
    t0=$(date +%s)
    sanlog=build-asan/sanitizer-reports
    tmp=$(mktemp -d)
    if { [ -f build-asan/build.ninja ] ||
        meson setup build-asan -Dbuildtype=debugoptimized -Db_sanitize=address,undefined \
            -Db_lundef=false -Dfuzz=disabled >"$tmp/setup.log" 2>&1 ||
        { cat "$tmp/setup.log"; false; }; } &&
        ninja -C build-asan dpdk_app/netmeta tests/tools/nm_mock_broker >/dev/null; then
        rm -rf "$sanlog" && mkdir -p "$sanlog"
        ASAN_OPTIONS="halt_on_error=1:abort_on_error=0:detect_leaks=1:log_path=$PWD/$sanlog/asan" \
            UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$PWD/$sanlog/ubsan" \
            meson test -C build-asan --no-rebuild --print-errorlogs --num-processes 1 \
            --suite golden || rc=1
        logs+=(build-asan/meson-logs/testlog.json)
        if compgen -G "$sanlog/*" >/dev/null; then
            echo "asan: sanitizer reports in $sanlog:"
            head -n 60 "$sanlog"/*
            echo '{"name": "asan-reports", "result": "FAIL"}' >"$tmp/reports.json"
            logs+=("$tmp/reports.json")
            rc=1
        fi
    else
        echo "asan: building build-asan failed"
        echo '{"name": "asan-build", "result": "FAIL"}' >"$tmp/build.json"
        logs+=("$tmp/build.json")
        rc=1
    fi
    echo "== asan: done in $(($(date +%s) - t0)) s =="
fi

python3 - "${logs[@]}" <<'PY'
import json, sys
ok = fail = skip = 0
for path in sys.argv[1:]:
    for line in open(path):
        r = json.loads(line)["result"]
        if r in ("OK", "EXPECTEDFAIL"): ok += 1
        elif r == "SKIP": skip += 1
        else: fail += 1
print(f"{ok} passed, {fail} failed, {skip} skipped")
PY
[ -n "${tmp:-}" ] && rm -rf "$tmp"
exit $rc
