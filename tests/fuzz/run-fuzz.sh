#!/bin/sh
# run-fuzz.sh TARGET SECONDS SEEDS: fuzz for SECONDS from the seed corpus,
# keeping what libFuzzer finds in a temporary directory (the seeds in the
# source tree are never written to).  A crash, leak or timeout fails the run.
set -eu
target=$(readlink -f "$1") seconds=$2 seeds=$(readlink -f "$3")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM
cd "$work"
"$target" -max_total_time="$seconds" -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 "$work" "$seeds"
