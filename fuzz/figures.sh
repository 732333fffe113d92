#!/bin/sh
# Prints the figures of the last run of each target from runs/<target>.log.
cd "$(dirname "$0")"
for t in ${*:-frame_decoder config_parser record_decoder service_decoder}; do
    log="runs/$t.log"
    [ -f "$log" ] || continue
    last=$(grep -a -E '^#[0-9]+' "$log" | tail -1)
    done_line=$(grep -a '^Done ' "$log" | tail -1)
    execs=$(grep -a 'stat::number_of_executed_units' "$log" | awk '{print $2}')
    rate=$(grep -a 'stat::average_exec_per_sec' "$log" | awk '{print $2}')
    rss=$(grep -a 'stat::peak_rss_mb' "$log" | awk '{print $2}')
    crashes=$(ls artifacts/"$t" 2>/dev/null | grep -c -E '^(crash|leak|oom|timeout)-')
    echo "$t: $done_line; execs=$execs exec/s=$rate peak_rss_mb=$rss crashes=$crashes"
    echo "  last: $last"
    echo "  corpus files: runs/$t $(ls runs/$t | wc -l), seeds $(ls corpus/$t | wc -l)"
done
