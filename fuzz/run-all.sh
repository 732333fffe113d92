#!/bin/sh
# Runs every target for $SECS seconds (default 600), one after another, at low priority. New
# corpus entries go to runs/<target>/ (ignored by git); the committed seeds are read from
# corpus/<target>/. Logs: runs/<target>.log.
set -u
cd "$(dirname "$0")"
SECS=${SECS:-600}
TARGETS=${*:-frame_decoder config_parser record_decoder service_decoder}
for t in $TARGETS; do
    mkdir -p "runs/$t"
    echo "== $t $(date -u +%FT%TZ)" >"runs/$t.log"
    nice -n 10 cargo +nightly fuzz run "$t" "runs/$t" "corpus/$t" -- \
        -max_total_time="$SECS" -malloc_limit_mb=64 -print_final_stats=1 >>"runs/$t.log" 2>&1
    echo "== exit $? $(date -u +%FT%TZ)" >>"runs/$t.log"
done
