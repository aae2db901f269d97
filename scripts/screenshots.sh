#!/usr/bin/env bash
# Regenerates screenshots/*.png from a real `rocky demo` run:
# tmux runs the console, `capture-pane -e` keeps its colours, aha turns that into HTML and
# headless Chromium photographs it. Everything comes from Debian packages, installed if missing.
#   bash scripts/screenshots.sh
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v tmux >/dev/null || need+=(tmux)
command -v aha >/dev/null || need+=(aha)
command -v chromium >/dev/null || need+=(chromium)
fc-list 2>/dev/null | grep -qi "DejaVu Sans Mono" || need+=(fonts-dejavu-core)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi

cargo build --release --quiet
bin="$PWD/target/release/rocky"
work=$(mktemp -d)
sock="rocky-shots-$$"
cols=150 rows=44
trap 'tmux -L "$sock" kill-server 2>/dev/null || true; rm -rf "$work"' EXIT

head -c 300000 /dev/urandom > "$work/sensor-fw-3.0.bin"
tmux -L "$sock" new-session -d -x $cols -y $rows -s shot \
  "TERM=xterm-256color $bin demo --data-dir $work/data --http 127.0.0.1:0 --chunk-interval-ms 60; sleep 600"

wait_for() { # text, seconds
  for _ in $(seq 1 $(( $2 * 10 ))); do
    tmux -L "$sock" capture-pane -p -t shot | grep -q -- "$1" && return 0
    sleep 0.1
  done
  echo "timed out waiting for: $1" >&2
  return 1
}

shoot() { # name
  local html="$work/$1.html"
  {
    echo '<html><head><meta charset="utf-8"><style>'
    echo 'body{margin:0;background:#1e1e1e;} pre{margin:8px;font:14px/1.2 "DejaVu Sans Mono",monospace;color:#ddd;}'
    echo '</style></head><body><pre>'
    tmux -L "$sock" capture-pane -e -p -t shot | aha --no-header --black
    echo '</pre></body></html>'
  } > "$html"
  chromium --headless --no-sandbox --disable-gpu --disable-background-networking --disable-component-update \
    --disable-sync --no-first-run --user-data-dir="$work/chrome" --hide-scrollbars \
    --window-size=1290,790 --screenshot="screenshots/$1.png" "file://$html" >/dev/null 2>&1
  echo "screenshots/$1.png"
}

keys() { tmux -L "$sock" send-keys -t shot "$@"; sleep 0.4; }

wait_for "transferring" 30
sleep 2
shoot main-rollout

wait_for "timed out" 30
keys n
keys -l "dev-0*"
keys Down
keys -l "$work/sensor-fw-3.0.bin"
wait_for "sha256" 10
shoot new-job-form
keys Escape

# The silent device's job: found with the filter, then its detail.
keys /
keys -l "timed"
keys Enter
keys Enter
shoot job-detail
keys Escape
keys Escape

keys Tab
keys k k k
keys Enter
shoot traffic-detail
keys Escape

keys '?'
shoot help
