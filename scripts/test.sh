#!/usr/bin/env bash
# Install what the tests need, build, and run every suite except soak.
#   scripts/test.sh                 all suites
#   scripts/test.sh unit golden     only these suites
# Ends with one line "N passed, N failed, N skipped".
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test || { echo "0 passed, 1 failed, 0 skipped"; exit 1; }

suites=("$@")
args=(--no-rebuild --print-errorlogs --num-processes 1)
if [ "${#suites[@]}" -gt 0 ]; then
    for s in "${suites[@]}"; do args+=(--suite "$s"); done
else
    args+=(--no-suite soak)
fi
meson test -C build "${args[@]}"
rc=$?
python3 - build/meson-logs/testlog.json <<'PY'
import json, sys
ok = fail = skip = 0
for line in open(sys.argv[1]):
    r = json.loads(line)["result"]
    if r in ("OK", "EXPECTEDFAIL"): ok += 1
    elif r == "SKIP": skip += 1
    else: fail += 1
print(f"{ok} passed, {fail} failed, {skip} skipped")
PY
exit $rc
