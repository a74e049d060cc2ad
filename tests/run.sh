#!/bin/sh
# Runs every test suite and ends with one line: "N passed, M failed".
#
#   unit      tests/unit/*.c (cmocka), built with ASan+UBSan; a leak or sanitizer report
#             makes the suite's process fail and counts as a failed test
#   system    tests/system (pytest) against bin/suppressd-asan and real redis-servers
#   release   the smoke test again against the optimized bin/suppressd
#   valgrind  unit tests and a replay against bin/suppressd under valgrind, when installed
#   scale     tests/scale: three bin/suppressd replicas behind haproxy, one SIGKILLed and
#             one drained under load, when haproxy is installed
#
# Run from anywhere; results land in build/test-results/.
set -u
cd "$(dirname "$0")/.." || exit 2
OUT=build/test-results
PY=${PYTHON:-/usr/bin/python3}
mkdir -p "$OUT"
rm -f "$OUT"/*
pass=0
fail=0

count() { # suite passed failed
    printf '%-10s %4d passed, %d failed\n' "$1" "$2" "$3"
    pass=$((pass + $2))
    fail=$((fail + $3))
}

# --- unit (TAP output from cmocka)
up=0
uf=0
for t in build/asan/tests/test_*; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    CMOCKA_MESSAGE_OUTPUT=TAP "$t" >"$OUT/$name.tap" 2>"$OUT/$name.err"
    rc=$?
    p=$(grep -c '^ok ' "$OUT/$name.tap")
    f=$(grep -c '^not ok ' "$OUT/$name.tap")
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        f=1 # crashed, leaked or a sanitizer fired after the last test
        echo "unit: $name exited $rc:"; tail -20 "$OUT/$name.err"
    fi
    [ "$f" -gt 0 ] && { grep '^not ok' "$OUT/$name.tap"; grep -A3 'ERROR\|Failure' "$OUT/$name.err" | head -20; }
    up=$((up + p))
    uf=$((uf + f))
done
count unit "$up" "$uf"

# --- system (pytest, junit xml for the counts)
junit_counts() { # file -> "passed failed"
    "$PY" - "$1" <<'PYEOF'
import sys, xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except Exception:
    print("0 1"); sys.exit()
suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
t = f = 0
for s in suites:
    t += int(s.get("tests", 0)) - int(s.get("skipped", 0))
    f += int(s.get("failures", 0)) + int(s.get("errors", 0))
print(t - f, f)
PYEOF
}

SUPPRESSD_BIN="$PWD/bin/suppressd-asan" "$PY" -m pytest -q -p no:cacheprovider \
    --junitxml="$OUT/system.xml" tests/system
# shellcheck disable=SC2046
count system $(junit_counts "$OUT/system.xml")

SUPPRESSD_BIN="$PWD/bin/suppressd" "$PY" -m pytest -q -p no:cacheprovider \
    --junitxml="$OUT/release.xml" tests/system/test_smoke.py
# shellcheck disable=SC2046
count release $(junit_counts "$OUT/release.xml")

# --- valgrind
if command -v valgrind >/dev/null 2>&1 && [ -f tests/valgrind.sh ]; then
    if sh tests/valgrind.sh >"$OUT/valgrind.log" 2>&1; then
        count valgrind "$(grep -c '^valgrind ok' "$OUT/valgrind.log")" 0
    else
        tail -30 "$OUT/valgrind.log"
        count valgrind "$(grep -c '^valgrind ok' "$OUT/valgrind.log")" 1
    fi
fi

# --- scale (release binary: three replicas under load; see tests/scale/test_scale.py)
if command -v haproxy >/dev/null 2>&1; then
    SUPPRESSD_BIN="$PWD/bin/suppressd" "$PY" -m pytest -q -p no:cacheprovider \
        --junitxml="$OUT/scale.xml" tests/scale
    # shellcheck disable=SC2046
    count scale $(junit_counts "$OUT/scale.xml")
else
    echo "scale: haproxy not installed, suite skipped"
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
