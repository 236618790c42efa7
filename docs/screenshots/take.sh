#!/usr/bin/env bash
# Screenshots of the built site as a reader sees it, with headless Chromium
# (apt-get install -y chromium). Run after `mkdocs build` from the repository root:
#   bash docs/screenshots/take.sh
# MathJax is served with the site (docs/javascripts/mathjax/), so no network is needed.
set -euo pipefail
out="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
cp -r site "$work/site"
port=8765
python3 -m http.server "$port" --directory "$work/site" >/dev/null 2>&1 &
server=$!
trap 'kill $server; rm -rf "$work"' EXIT
sleep 1
shoot() {  # url-path file width height
  chromium --headless --no-sandbox --disable-gpu --hide-scrollbars \
    --window-size="$3,$4" --virtual-time-budget=15000 \
    --screenshot="$out/$2" "http://127.0.0.1:$port/$1" 2>/dev/null
}
shoot "" home.png 1400 1000
shoot "tutorials/05_lstm/" tutorial_lstm.png 1400 1800
shoot "api/cells/" api_cells.png 1400 1400
shoot "examples/sunspots/" example_sunspots.png 1400 3200
