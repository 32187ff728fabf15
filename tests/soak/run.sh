#!/usr/bin/env bash
# Soak: steady load for SOAK_SECONDS (default 300) while tokens expire every few seconds, the
# config is reloaded with SIGHUP every second and the client secret file is rotated every
# ROTATE_SECONDS (default 30). Run by hand, not by CI:
#
#   tests/soak/run.sh                     # 5 minutes
#   SOAK_SECONDS=60 tests/soak/run.sh     # a quick one
#
# Prints requests served and failed (goal: 0 failed), token requests made against the
# fewest possible, and callout's RSS at the start and the end (goal: flat).
set -euo pipefail

SOAK_SECONDS=${SOAK_SECONDS:-300}
ROTATE_SECONDS=${ROTATE_SECONDS:-30}
EXPIRES_IN=${EXPIRES_IN:-5}
CONNS=${CONNS:-16}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
UPSTREAM=18180 TOKEN=18170 CALLOUT=18190

for tool in nginx wrk curl; do
  command -v $tool >/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk curl >/dev/null
    break
  }
done
(cd "$ROOT" && cargo build --release --locked --bin callout -q)

WORK=$(mktemp -d /tmp/callout-soak.XXXXXX)
chmod 755 "$WORK"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  nginx -p "$WORK" -c nginx.conf -s stop 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# The upstream checks nothing; the token endpoint counts what it is asked for. Token
# validity is judged by callout's own guarantee: the token endpoint records when each token
# expires and the upstream logs which token it saw, and the script compares them at the end.
cat >"$WORK/nginx.conf" <<CONF
worker_processes 1;
daemon on;
pid $WORK/nginx.pid;
error_log $WORK/error.log warn;
events { worker_connections 4096; }
http {
  log_format tokens '\$msec \$http_authorization';
  access_log $WORK/upstream.log tokens buffer=64k flush=1s;
  keepalive_requests 10000000;
  server {
    listen 127.0.0.1:$UPSTREAM;
    location / { default_type application/json; return 200 '{"ok":true}'; }
  }
}
CONF
nginx -p "$WORK" -c nginx.conf

cat >"$WORK/token.py" <<'PY'
import http.server, json, sys, threading, time
lock = threading.Lock()
issued = open(sys.argv[3], "w")
n = 0
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        global n
        self.rfile.read(int(self.headers.get("content-length", 0)))
        with lock:
            n += 1
            token = f"soak-{n}"
            # Like real servers: exp is a whole second.
            issued.write(f"{token} {int(time.time()) + int(sys.argv[2])}\n"); issued.flush()
        body = json.dumps({"access_token": token, "token_type": "Bearer", "expires_in": int(sys.argv[2])}).encode()
        self.send_response(200); self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
python3 "$WORK/token.py" $TOKEN "$EXPIRES_IN" "$WORK/issued.txt" &
PIDS+=($!)

echo "secret-0" >"$WORK/secret.txt"
cat >"$WORK/callout.toml" <<TOML
[server]
listen = "127.0.0.1:$CALLOUT"
default_permission_sets = ["Soak"]

[external_credentials.Soak_Idp]
protocol = "oauth2"
flow = "client_credentials"
token_url = "http://127.0.0.1:$TOKEN/token"
refresh_before_expiry = "60s"

[[external_credentials.Soak_Idp.principals]]
name = "Soak"
sequence = 1
permission_sets = ["Soak"]
client_id = "soak"
client_secret = { file = "secret.txt" }

[named_credentials.Api]
url = "http://127.0.0.1:$UPSTREAM"
external_credential = "Soak_Idp"
TOML
RUST_LOG=warn "$ROOT/target/release/callout" serve --config "$WORK/callout.toml" 2>"$WORK/callout.log" &
CALLOUT_PID=$!
PIDS+=($CALLOUT_PID)
rss() { awk '/^VmRSS/ {print $2}' "/proc/$CALLOUT_PID/status"; }
# Ready when a request makes it through callout, the token endpoint and the upstream.
for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$CALLOUT/Api/warm" && break; sleep 0.1; done
rss_start=$(rss)

cat >"$WORK/report.lua" <<'LUA'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT requests=%d non2xx=%d socket_errors=%d p99_us=%d\n", summary.requests,
    e.status, e.connect + e.read + e.write + e.timeout, latency:percentile(99)))
end
LUA
echo "soak: ${SOAK_SECONDS}s, $CONNS connections, tokens expire every ${EXPIRES_IN}s, SIGHUP every second, secret rotated every ${ROTATE_SECONDS}s"
wrk -t1 -c"$CONNS" -d"${SOAK_SECONDS}s" -s "$WORK/report.lua" "http://127.0.0.1:$CALLOUT/Api/items" >"$WORK/wrk.txt" 2>&1 &
WRK=$!
rotations=0 reloads=0
start=$(date +%s)
while kill -0 $WRK 2>/dev/null; do
  sleep 1
  now=$(date +%s)
  if (((now - start) / ROTATE_SECONDS > rotations)); then
    rotations=$((rotations + 1))
    echo "secret-$rotations" >"$WORK/secret.txt"
  fi
  kill -HUP $CALLOUT_PID
  reloads=$((reloads + 1))
  if ((reloads % 60 == 0)); then echo "  $((now - start))s: RSS $(($(rss) / 1024)) MiB, token requests $(wc -l <"$WORK/issued.txt")"; fi
done
wait $WRK || true
rss_end=$(rss)
nginx -p "$WORK" -c nginx.conf -s reload 2>/dev/null # flushes the buffered log
sleep 1.5

read -r served non2xx socket_errors p99 < <(awk '/^RESULT/ {
  for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
  print v["requests"], v["non2xx"], v["socket_errors"], v["p99_us"] }' "$WORK/wrk.txt")
made=$(wc -l <"$WORK/issued.txt")
minimum=$(((SOAK_SECONDS + EXPIRES_IN - 1) / EXPIRES_IN + rotations))
# Any request the upstream saw with a token past the server's own expiry?
expired=$(awk 'NR == FNR { expiry[$1] = $2; next } ($2 in expiry) && $1 >= expiry[$2] { n++ } END { print n + 0 }' \
  "$WORK/issued.txt" <(sed 's/Bearer //' "$WORK/upstream.log"))
reload_errors=$(grep -c "reload refused" "$WORK/callout.log" || true)

cat <<REPORT

| measure | value |
|---|---|
| duration | ${SOAK_SECONDS} s |
| requests served (2xx) | $((served - non2xx)) |
| requests failed (non-2xx + socket errors) | $((non2xx + socket_errors)) |
| p99 latency | $((p99 / 1000)).$(((p99 % 1000) / 100)) ms |
| requests the upstream saw with an expired token | $expired |
| reloads (SIGHUP) / refused | $reloads / $reload_errors |
| secret rotations | $rotations |
| token requests made | $made |
| fewest possible (one per ${EXPIRES_IN} s lifetime, plus one per rotation) | $minimum |
| callout RSS at start / end | $((rss_start / 1024)) MiB / $((rss_end / 1024)) MiB ($rss_start / $rss_end KiB) |
REPORT
