#!/usr/bin/env bash
# callout's benchmark: callout against nginx (the reference proxy) and the direct upstream,
# all on this machine, in one run. Method: /work/shared/PERF-BASELINES.md; see bench/README.md.
#
#   bench/run.sh                  # full run (~15 min): ROUNDS=5 DURATION=10 WARMUP=2
#   QUICK=1 bench/run.sh          # smoke run (~2 min): ROUNDS=1 DURATION=3 WARMUP=1
#   SCENARIOS="small" ROUNDS=7 bench/run.sh
#
# It installs what it needs (Debian packages), builds callout, starts an nginx upstream, an
# nginx reference proxy, a token endpoint and callout, verifies them, runs shuffled rounds
# with the servers on core 0 and the load generator on core 1, prints one markdown table and
# keeps everything in bench/results/<timestamp>/. Every process it starts is stopped on exit.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)

# ---------------------------------------------------------------- settings (env overrides)
QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
    ROUNDS=${ROUNDS:-1} DURATION=${DURATION:-3} WARMUP=${WARMUP:-1}
    STARTUP_RUNS=${STARTUP_RUNS:-3} IDLE_HOLD=${IDLE_HOLD:-3}
else
    ROUNDS=${ROUNDS:-5} DURATION=${DURATION:-10} WARMUP=${WARMUP:-2}
    STARTUP_RUNS=${STARTUP_RUNS:-5} IDLE_HOLD=${IDLE_HOLD:-5}
fi
DURATION=${DURATION%s} WARMUP=${WARMUP%s}
SCENARIOS=${SCENARIOS:-"small big-down big-up h2c idle startup"}
CONNS=${CONNS:-64}              # small: wrk -t1 -c$CONNS
BIG_CONNS=${BIG_CONNS:-16}      # big-down, big-up
H2_CONNS=${H2_CONNS:-1}         # h2c: h2load -c$H2_CONNS -m$H2_STREAMS
H2_STREAMS=${H2_STREAMS:-64}
H2_NGINX=${H2_NGINX:-0}         # 1: also run nginx with h2load --h1 in the h2c group
IDLE_CONNS=${IDLE_CONNS:-10000}
ROUTES=${ROUTES:-10000}         # named credentials in the routing-cost config
STARTUP_ROUTES=${STARTUP_ROUTES:-100}
NGINX_PROXY_BUFFERS=${NGINX_PROXY_BUFFERS:-}  # e.g. "8 64k" for /up/big (default: nginx's 8 x 4k)
ACCESS_LOG=${ACCESS_LOG:-0}     # 1: nginx access_log and callout's per-request log line, both to files
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
SEED=${SEED:-$(date +%s)}
SKIP_BUILD=${SKIP_BUILD:-0}
CALLOUT_BIN=${CALLOUT_BIN:-$REPO/target/release/callout}
PORT_BASE=${PORT_BASE:-18070}     # all ports below move with it
TOKEN_PORT=${TOKEN_PORT:-$PORT_BASE}
UPSTREAM_PORT=${UPSTREAM_PORT:-$((PORT_BASE + 10))}
NGINX_PORT=${NGINX_PORT:-$((PORT_BASE + 11))}
CALLOUT_PORT=${CALLOUT_PORT:-$((PORT_BASE + 20))}
ROUTES_PORT=${ROUTES_PORT:-$((PORT_BASE + 21))}
SPARE_PORT=${SPARE_PORT:-$((PORT_BASE + 22))}  # idle: fresh callout; +1 fresh nginx; +2 startup

SMALL_PATH=/v1/items/42
# The upstream's fixed body: 93 bytes with the newline.
SMALL_BODY='{"id":42,"name":"bench item","status":"active","price":19.99,"tags":["a","bc"],"stock":1200}'
export BENCH_CLIENT_SECRET=bench-secret

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- 1. tools, build
ECHO_MODULE=/usr/lib/nginx/modules/ngx_http_echo_module.so
install_missing() {
    local need=()
    command -v nginx >/dev/null || need+=(nginx-light)
    [[ -e $ECHO_MODULE ]] || need+=(libnginx-mod-http-echo)   # nginx-light brings it too
    command -v wrk >/dev/null || need+=(wrk)
    command -v h2load >/dev/null || need+=(nghttp2-client)
    command -v taskset >/dev/null || need+=(util-linux)
    command -v curl >/dev/null || need+=(curl)
    command -v python3 >/dev/null || need+=(python3)
    command -v sha256sum >/dev/null || need+=(coreutils)
    ((${#need[@]})) || return 0
    log "installing ${need[*]}"
    local sudo=()
    [[ $(id -u) == 0 ]] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${need[@]}" >/dev/null
}
install_missing
# Debian's nginx package may start the system nginx on :80; ours use their own ports.

if [[ $SKIP_BUILD != 1 ]]; then
    command -v cargo >/dev/null || die "cargo not found (the machine's Rust toolchain is expected)"
    log "cargo build --release (waits if another build holds the lock)"
    (cd "$REPO" && cargo build --release --quiet) || die "cargo build --release failed"
fi
[[ -x $CALLOUT_BIN ]] || die "no callout binary at $CALLOUT_BIN"

# From here on this script and everything it starts runs on the load core; servers are
# started on the server core explicitly.
taskset -p -c "$LOAD_CPU" $$ >/dev/null
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if ((IDLE_CONNS + 1024 > $(ulimit -n))); then
    log "open-file limit $(ulimit -n): IDLE_CONNS lowered from $IDLE_CONNS to $(($(ulimit -n) - 1024))"
    IDLE_CONNS=$(($(ulimit -n) - 1024))
fi

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for port in "$TOKEN_PORT" "$UPSTREAM_PORT" "$NGINX_PORT" "$CALLOUT_PORT" "$ROUTES_PORT" \
    "$SPARE_PORT" "$((SPARE_PORT + 1))" "$((SPARE_PORT + 2))"; do
    port_busy "$port" && die "port $port is already in use (another benchmark?); run with PORT_BASE=NNNNN to move all ports"
done

# ---------------------------------------------------------------- work dirs, cleanup
STAMP=$(date +%Y%m%d-%H%M%S)
OUT=$BENCH_DIR/results/$STAMP
mkdir -p "$OUT/raw"
WORK=$(mktemp -d /tmp/callout-bench.XXXXXX)
chmod 755 "$WORK"
PIDS=()          # servers and clients we started, stopped on exit
SAMPLER_PID=""   # the RSS sampler of the current run
LOAD_PID=""      # the current wrk/h2load

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local pid
    for pid in $SAMPLER_PID $LOAD_PID; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for _ in $(seq 50); do
        local alive=0
        for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}" $SAMPLER_PID $LOAD_PID; do wait "$pid" 2>/dev/null || true; done
    cp "$WORK"/*.log "$WORK"/*.err "$WORK"/*.conf "$WORK"/*.toml "$OUT/raw/" 2>/dev/null || true
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- helpers
# Pids of a process and all its descendants.
tree_pids() {
    local pids=" $1 " changed=1 stat pid rest ppid
    while ((changed)); do
        changed=0
        for stat in /proc/[0-9]*/stat; do
            pid=${stat#/proc/} pid=${pid%/stat}
            [[ $pids == *" $pid "* ]] && continue
            read -r rest 2>/dev/null <"$stat" || continue
            rest=${rest##*) }              # after "pid (comm) ": state ppid ...
            ppid=${rest#* } ppid=${ppid%% *}
            [[ $pids == *" $ppid "* ]] && pids+="$pid " changed=1
        done
    done
    # shellcheck disable=SC2086 # unquoted on purpose: trims the spaces
    echo $pids
}

# "utime stime" in clock ticks, summed over the given pids (all threads of each).
cpu_ticks() {
    local u=0 s=0 pid line f
    for pid in "$@"; do
        line=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
        read -ra f <<<"${line##*) }"
        u=$((u + f[11])) s=$((s + f[12]))
    done
    echo "$u $s"
}

rss_kib() {
    local total=0 pid v
    for pid in "$@"; do
        v=$(awk '/^VmRSS:/{print $2}' "/proc/$pid/status" 2>/dev/null) || v=0
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

# "busy steal total" jiffies of one cpu from /proc/stat.
cpu_jiffies() {
    awk -v c="cpu$1" '$1 == c { t = 0; for (i = 2; i <= 9; i++) t += $i; print t - $5 - $6, $9, t }' /proc/stat
}

# Samples the RSS of the given pids every second into $1 (the maximum seen) until killed.
rss_sampler() {
    local file=$1 max=0 r
    shift
    while :; do
        r=$(rss_kib "$@")
        ((r > max)) && max=$r && echo "$max" >"$file"
        sleep 1
    done
}

wait_http() { # url [seconds]
    local deadline=$((SECONDS + ${2:-15}))
    until curl -fsS -o /dev/null --max-time 1 "$1" 2>/dev/null; do
        ((SECONDS < deadline)) || return 1
        sleep 0.05
    done
}

start_server() { # name cmd... ; sets LAST_PID
    local name=$1
    shift
    taskset -c "$SERVER_CPU" "$@" >"$WORK/$name.log" 2>&1 &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}

alive() { kill -0 "$1" 2>/dev/null; }

# ---------------------------------------------------------------- 2. servers
log "results: $OUT"
mkdir -p "$WORK/www" "$WORK/ngx"
head -c 1048576 /dev/urandom >"$WORK/www/big.bin"
head -c 1048576 /dev/zero | tr '\0' 'u' >"$WORK/upload.bin"

if [[ $ACCESS_LOG == 1 ]]; then
    UP_ACCESS="access_log off;"   # the upstream never logs: it is not under test
    PROXY_ACCESS="access_log $WORK/nginx-access.log;"
    CALLOUT_LOG=info
else
    UP_ACCESS="access_log off;"
    PROXY_ACCESS="access_log off;"
    CALLOUT_LOG=warn
fi

common_http() { # name
    cat <<EOF
    client_body_temp_path $WORK/ngx/$1-body;
    proxy_temp_path $WORK/ngx/$1-proxy;
    fastcgi_temp_path $WORK/ngx/$1-fastcgi;
    uwsgi_temp_path $WORK/ngx/$1-uwsgi;
    scgi_temp_path $WORK/ngx/$1-scgi;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
EOF
}

cat >"$WORK/upstream.conf" <<EOF
# The upstream: 1 worker, fixed 93-byte JSON on every path, keep-alive for 10M requests.
load_module $ECHO_MODULE;
worker_processes 1;
daemon off;
pid $WORK/upstream.pid;
error_log $WORK/upstream.err warn;
events { worker_connections 4096; }
http {
    $UP_ACCESS
$(common_http upstream)
    sendfile on;
    server {
        listen 127.0.0.1:$UPSTREAM_PORT backlog=4096;
        default_type application/json;
        client_max_body_size 2m;
        location / { return 200 '$SMALL_BODY\n'; }
        location = /echo { default_type text/plain; return 200 "\$http_authorization"; }
        location = /big { default_type application/octet-stream; alias $WORK/www/big.bin; }
        # 1 MiB uploads: read the whole body, then answer. (With a bare "return" nginx
        # answers before the body has arrived, and a proxy that is still sending it must
        # then drop the connection, which would measure reconnects instead of streaming.)
        location = /upload {
            client_body_buffer_size 2m;
            echo_read_request_body;
            echo '{"ok":true}';
        }
    }
}
EOF

nginx_proxy_conf() { # name port worker_connections
    cat <<EOF
# The reference proxy (PERF-BASELINES "Baselines"): 1 worker, /up/<rest> -> upstream/<rest>,
# static bearer token, keep-alive pool of 256 to the upstream.
worker_processes 1;
daemon off;
pid $WORK/$1.pid;
error_log $WORK/$1.err warn;
events { worker_connections $3; }
http {
    $PROXY_ACCESS
$(common_http "$1")
    upstream backend {
        server 127.0.0.1:$UPSTREAM_PORT;
        keepalive 256;
        keepalive_requests 10000000;
        keepalive_timeout 300s;
    }
    server {
        listen 127.0.0.1:$2 backlog=4096;
        client_max_body_size 2m;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Authorization "Bearer abc";
        location /up/ { proxy_pass http://backend/; }
        # Large bodies stream as callout's do: no temp files, no whole-body buffering.
        location = /up/big {
            proxy_pass http://backend/big;
            proxy_max_temp_file_size 0;
            ${NGINX_PROXY_BUFFERS:+proxy_buffers $NGINX_PROXY_BUFFERS; proxy_buffer_size ${NGINX_PROXY_BUFFERS#* };}
        }
        location = /up/upload { proxy_pass http://backend/upload; proxy_request_buffering off; }
    }
}
EOF
}
nginx_proxy_conf nginx-proxy "$NGINX_PORT" 4096 >"$WORK/nginx-proxy.conf"

callout_config() { # port > file
    sed -e "s/127\.0\.0\.1:18090/127.0.0.1:$1/" \
        -e "s/127\.0\.0\.1:18080/127.0.0.1:$UPSTREAM_PORT/" \
        -e "s/127\.0\.0\.1:18070/127.0.0.1:$TOKEN_PORT/" "$BENCH_DIR/callout.toml"
}
callout_config "$CALLOUT_PORT" >"$WORK/callout.toml"
python3 "$BENCH_DIR/gen_config.py" "$ROUTES" "$ROUTES_PORT" "http://127.0.0.1:$UPSTREAM_PORT" \
    "http://127.0.0.1:$TOKEN_PORT/token" >"$WORK/callout-routes.toml"
"$CALLOUT_BIN" check --config "$WORK/callout.toml" >/dev/null || die "callout check failed for bench/callout.toml"

start_callout() { # name config port ; sets LAST_PID
    start_server "$1" env RUST_LOG="$CALLOUT_LOG" "$CALLOUT_BIN" serve --config "$2"
    wait_http "http://127.0.0.1:$3/.callout/ready" 60 || { tail -20 "$WORK/$1.log" >&2; die "$1 did not become ready"; }
    taskset -a -p -c "$SERVER_CPU" "$LAST_PID" >/dev/null
}

log "starting upstream, nginx proxy, token endpoint, callout"
start_server upstream nginx -p "$WORK/ngx" -c "$WORK/upstream.conf" -e "$WORK/upstream.err"
UPSTREAM_PID=$LAST_PID
start_server nginx-proxy nginx -p "$WORK/ngx" -c "$WORK/nginx-proxy.conf" -e "$WORK/nginx-proxy.err"
NGINX_PID=$LAST_PID
start_server token python3 "$BENCH_DIR/token_endpoint.py" "$TOKEN_PORT"
TOKEN_PID=$LAST_PID
wait_http "http://127.0.0.1:$UPSTREAM_PORT/" || die "upstream nginx did not start ($(cat "$WORK/upstream.err" 2>/dev/null))"
wait_http "http://127.0.0.1:$NGINX_PORT/up/" || die "nginx proxy did not start ($(cat "$WORK/nginx-proxy.err" 2>/dev/null))"
wait_http "http://127.0.0.1:$TOKEN_PORT/count" || die "token endpoint did not start"
start_callout callout "$WORK/callout.toml" "$CALLOUT_PORT"
CALLOUT_PID=$LAST_PID
CALLOUT_IDLE_RSS=$(rss_kib "$CALLOUT_PID")
ROUTES_PID=
if [[ " $SCENARIOS " == *" small "* ]]; then
    start_callout callout-routes "$WORK/callout-routes.toml" "$ROUTES_PORT"
    ROUTES_PID=$LAST_PID
fi
for pid in $(tree_pids "$UPSTREAM_PID") $(tree_pids "$NGINX_PID") "$TOKEN_PID"; do
    taskset -a -p -c "$SERVER_CPU" "$pid" >/dev/null
done
UPSTREAM_TREE=$(tree_pids "$UPSTREAM_PID")
NGINX_TREE=$(tree_pids "$NGINX_PID")

# ---------------------------------------------------------------- verification
log "verifying each path once"
VERIFY=$OUT/verify.txt
: >"$VERIFY"
check() { # description, then a command that must succeed
    local what=$1
    shift
    if "$@" >>"$VERIFY" 2>&1; then
        echo "ok   $what" >>"$VERIFY"
    else
        echo "FAIL $what" >>"$VERIFY"
        FAILED+=("$what")
    fi
}
FAILED=()
UP=http://127.0.0.1:$UPSTREAM_PORT
NG=http://127.0.0.1:$NGINX_PORT/up
CO=http://127.0.0.1:$CALLOUT_PORT/up
RO=http://127.0.0.1:$ROUTES_PORT/up
direct_body=$(curl -fsS "$UP$SMALL_PATH")
[[ ${#direct_body} -gt 0 ]] || die "the upstream returned nothing"
echo "direct body: $(curl -fsS "$UP$SMALL_PATH" | wc -c) bytes" >>"$VERIFY"
big_sum=$(curl -fsS "$UP/big" | sha256sum)
same_body() { [[ "$(curl -fsS "$1")" == "$direct_body" ]]; }
same_big() { [[ "$(curl -fsS "$1" | sha256sum)" == "$big_sum" ]]; }
echo_is() { local got; got=$(curl -fsS "$1"); echo "  $1 -> upstream saw Authorization: $got"; [[ $got == "$2" ]]; }
upload_ok() { [[ "$(curl -sS -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/octet-stream' --data-binary @"$WORK/upload.bin" "$1")" == 200 ]]; }
h2_ok() {
    local version
    version=$(curl -fsS --http2-prior-knowledge -o "$WORK/h2.body" -w '%{http_version}' "$1") || return 1
    echo "  $1 -> HTTP/$version"
    [[ $version == 2 && "$(cat "$WORK/h2.body")" == "$direct_body" ]]
}
targets_to_check=("nginx $NG Bearer abc" "callout $CO Bearer bench-token")
[[ -n $ROUTES_PID ]] && targets_to_check+=("callout-routes $RO Bearer bench-token")
for t in "${targets_to_check[@]}"; do
    read -r name base token <<<"$t"
    check "$name delivers Authorization: $token to the upstream" echo_is "$base/echo" "$token"
    check "$name small body equals direct" same_body "$base$SMALL_PATH"
    check "$name 1 MiB download equals direct" same_big "$base/big"
    check "$name 1 MiB upload gets 200" upload_ok "$base/upload"
done
check "direct 1 MiB upload gets 200" upload_ok "$UP/upload"
check "callout h2c (prior knowledge) body equals direct" h2_ok "$CO$SMALL_PATH"
echo "token requests so far: $(curl -fsS "http://127.0.0.1:$TOKEN_PORT/count")" >>"$VERIFY"
cat "$VERIFY" >&2
((${#FAILED[@]} == 0)) || die "verification failed: ${FAILED[*]} (see $VERIFY and $OUT/raw/)"

# ---------------------------------------------------------------- 3. load runs
# target definitions: scenario:target -> tool conns url proxy-pid
TARGETS=()
for sc in $SCENARIOS; do
    case $sc in
        small) TARGETS+=(small:direct small:nginx small:callout small:callout-routes) ;;
        big-down | big-up) TARGETS+=("$sc:direct" "$sc:nginx" "$sc:callout") ;;
        h2c)
            TARGETS+=(h2c:callout-h2c h2c:callout-h1)
            [[ $H2_NGINX == 1 ]] && TARGETS+=(h2c:nginx-h1)
            ;;
        idle | startup) ;;
        *) die "unknown scenario $sc (known: small big-down big-up h2c idle startup)" ;;
    esac
done

# Writes a wrk script: the request part (if any) followed by report.lua.
cat "$BENCH_DIR/report.lua" >"$WORK/get.lua"
cat "$BENCH_DIR/upload.lua" "$BENCH_DIR/report.lua" >"$WORK/post.lua"

TSV=$OUT/rounds.tsv
printf '%s\n' "round	order	scenario	target	tool	conns	requests	seconds	rps	mib_s	p50_us	p99_us	max_us	errors	non2xx	proxy_cpu_us	proxy_user_us	proxy_sys_us	upstream_cpu_us	cpu_vs_upstream	peak_rss_kib	core0_busy_pct	core0_steal_pct	core1_busy_pct" >"$TSV"

# Runs the load tool once: load <tool> <conns> <seconds> <url> <script|-> <outfile>
# (in the background, so that Ctrl-C or SIGTERM stop the run at once)
load() {
    load_cmd "$@" &   # load_cmd execs timeout, so LOAD_PID is timeout's, which passes signals on
    LOAD_PID=$!
    local rc=0
    wait "$LOAD_PID" || rc=$?
    LOAD_PID=""
    return "$rc"
}
load_cmd() {
    local tool=$1 conns=$2 secs=$3 url=$4 script=$5 out=$6
    case $tool in
        wrk)
            exec timeout $((secs + 30)) taskset -c "$LOAD_CPU" wrk -t1 -c"$conns" -d"${secs}s" --timeout 10s \
                -s "$script" "$url" >"$out" 2>&1
            ;;
        h2load-h2)
            exec timeout $((secs + 30)) taskset -c "$LOAD_CPU" h2load -t1 -c"$H2_CONNS" -m"$H2_STREAMS" -D "$secs" \
                --log-file="$out.reqlog" "$url" >"$out" 2>&1
            ;;
        h2load-h1)
            exec timeout $((secs + 30)) taskset -c "$LOAD_CPU" h2load --h1 -t1 -c"$conns" -m1 -D "$secs" \
                --log-file="$out.reqlog" "$url" >"$out" 2>&1
            ;;
    esac
}

# Parses a run's output into "requests seconds p50 p99 max errors non2xx bytes".
parse() {
    local tool=$1 out=$2
    if [[ $tool == wrk ]]; then
        awk '/^RESULT/ {
            for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
            print v["requests"], v["duration_us"] / 1e6, v["p50_us"], v["p99_us"], v["max_us"],
                  v["err_connect"] + v["err_read"] + v["err_write"] + v["err_timeout"], v["non2xx"], v["bytes"]
            found = 1 }
            END { if (!found) print "0 1 0 0 0 1 0 0" }' "$out"
    else
        # h2load: "finished in 3.00s, ..." / "requests: N total, N started, N done, N succeeded,
        # F failed, E errored, T timeout" / "status codes: a 2xx, b 3xx, c 4xx, d 5xx" /
        # "traffic: 9.85MB (10327009) total, ..."; percentiles from the per-request log.
        local pcts
        pcts=$(awk -F'\t' '$2 ~ /^[0-9]+$/ { print $3 }' "$out.reqlog" 2>/dev/null | sort -n | awk '
            { v[NR] = $1 } END {
                if (NR == 0) { print "0 0 0"; exit }
                i50 = int(NR * 0.50 + 0.5); if (i50 < 1) i50 = 1
                i99 = int(NR * 0.99 + 0.5); if (i99 < 1) i99 = 1
                print v[i50], v[i99], v[NR] }')
        awk -v pcts="$pcts" '
            /^finished in/ { secs = $3; if (secs ~ /ms,$/) { sub(/ms,$/, "", secs); secs /= 1000 } else sub(/s,$/, "", secs) }
            /^requests:/ { done = $8; failed = $10; errored = $12; timeouts = $14 }
            /^status codes:/ { non2xx = $7 + $9 }
            /^traffic:/ { if (match($0, /\([0-9]+\)/)) bytes = substr($0, RSTART + 1, RLENGTH - 2) }
            END { split(pcts, p, " ")
                  if (secs == "") { print "0 1 0 0 0 1 0 0"; exit }
                  print done + 0, secs, p[1], p[2], p[3], failed + errored + timeouts, non2xx + 0, bytes + 0 }' "$out"
    fi
}

run_one() { # round order scenario target
    local round=$1 order=$2 sc=$3 tg=$4
    local tool=wrk conns=$CONNS script=$WORK/get.lua path=$SMALL_PATH base pid
    case $sc in
        big-down) conns=$BIG_CONNS path=/big ;;
        big-up) conns=$BIG_CONNS path=/upload script=$WORK/post.lua ;;
        h2c) tool=h2load-h1 ;;
    esac
    case $tg in
        direct) base=$UP pid=$UPSTREAM_PID ;;
        nginx | nginx-h1) base=$NG pid=$NGINX_PID ;;
        callout | callout-h1) base=$CO pid=$CALLOUT_PID ;;
        callout-h2c) base=$CO pid=$CALLOUT_PID tool=h2load-h2 conns="${H2_CONNS}x$H2_STREAMS" ;;
        callout-routes) base=$RO pid=$ROUTES_PID ;;
    esac
    alive "$pid" || die "$tg (pid $pid) is not running any more; see $OUT/raw/"
    local url=$base$path tree raw=$OUT/raw/r$round-$sc-$tg.txt
    if [[ $pid == "$UPSTREAM_PID" ]]; then tree=$UPSTREAM_TREE; elif [[ $pid == "$NGINX_PID" ]]; then tree=$NGINX_TREE; else tree=$pid; fi

    # warm-up, thrown away
    load "$tool" "$conns" "$WARMUP" "$url" "$script" "$WORK/warmup.txt" || true
    rm -f "$WORK/warmup.txt.reqlog"

    local p0 u0 c00 c10 p1 u1 c01 c11 sampler rssfile=$WORK/rss.max
    echo 0 >"$rssfile"
    # shellcheck disable=SC2086
    rss_sampler "$rssfile" $tree &
    sampler=$!
    SAMPLER_PID=$sampler
    # shellcheck disable=SC2086
    p0=$(cpu_ticks $tree) u0=$(cpu_ticks $UPSTREAM_TREE) c00=$(cpu_jiffies "$SERVER_CPU") c10=$(cpu_jiffies "$LOAD_CPU")
    load "$tool" "$conns" "$DURATION" "$url" "$script" "$raw" || true
    # shellcheck disable=SC2086
    p1=$(cpu_ticks $tree) u1=$(cpu_ticks $UPSTREAM_TREE) c01=$(cpu_jiffies "$SERVER_CPU") c11=$(cpu_jiffies "$LOAD_CPU")
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
    SAMPLER_PID=""
    local peak
    peak=$(cat "$rssfile")
    alive "$pid" || { tail -30 "$WORK/"*callout*.log >&2 2>/dev/null || true; die "$tg died during $sc (round $round); see $OUT/raw/"; }

    local requests secs p50 p99 max errors non2xx bytes
    read -r requests secs p50 p99 max errors non2xx bytes < <(parse "$tool" "$raw")
    [[ $sc == big-up ]] && bytes=$((bytes + requests * 1048576))   # count the uploaded bodies too
    if [[ $tool == h2load* ]]; then
        # keep the percentiles, drop the big per-request log
        rm -f "$raw.reqlog"
    fi
    awk -v OFS='\t' -v round="$round" -v order="$order" -v sc="$sc" -v tg="$tg" -v tool="$tool" \
        -v conns="$conns" -v req="$requests" -v secs="$secs" -v p50="$p50" -v p99="$p99" -v max="$max" \
        -v err="$errors" -v non2xx="$non2xx" -v bytes="$bytes" -v tck="$(getconf CLK_TCK)" \
        -v p0="$p0" -v p1="$p1" -v u0="$u0" -v u1="$u1" -v direct="$([[ $tg == direct ]] && echo 1 || echo 0)" \
        -v peak="$peak" -v c00="$c00" -v c01="$c01" -v c10="$c10" -v c11="$c11" 'BEGIN {
            split(p0, a, " "); split(p1, b, " "); split(u0, c, " "); split(u1, d, " ")
            split(c00, e, " "); split(c01, f, " "); split(c10, g, " "); split(c11, h, " ")
            n = (req > 0) ? req : 1
            pu = (b[1] - a[1]) / tck * 1e6 / n; ps = (b[2] - a[2]) / tck * 1e6 / n
            up = ((d[1] - c[1]) + (d[2] - c[2])) / tck * 1e6 / n
            cpu = pu + ps
            ratio = (up > 0 && !direct) ? sprintf("%.3f", cpu / up) : ""
            t0 = f[3] - e[3]; t1 = h[3] - g[3]
            b0 = (t0 > 0) ? (f[1] - e[1]) * 100 / t0 : 0
            s0 = (t0 > 0) ? (f[2] - e[2]) * 100 / t0 : 0
            b1 = (t1 > 0) ? (h[1] - g[1]) * 100 / t1 : 0
            printf "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%.3f\t%.1f\t%.2f\t%s\t%s\t%s\t%d\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t%s\t%d\t%.1f\t%.1f\t%.1f\n",
                round, order, sc, tg, tool, conns, req, secs, req / secs, bytes / secs / 1048576, p50, p99, max,
                err, non2xx, cpu, pu, ps, up, ratio, peak,
                b0, s0, b1 }' >>"$TSV"
    tail -1 "$TSV" | awk -F'\t' '{ printf "  round %s #%s %-8s %-15s %9.0f req/s  p50 %6.2f ms  p99 %6.2f ms  cpu %6.1f us/req  rss %6.1f MiB  err %s non2xx %s\n",
        $1, $2, $3, $4, $9, $11 / 1000, $12 / 1000, $16, $21 / 1024, $14, $15 }' >&2
}

# settings and versions
{
    echo "date: $(date -Is)  host: $(uname -r), $(getconf _NPROCESSORS_ONLN) cpus, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
    echo "callout: $CALLOUT_BIN ($(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo ?)$(cd "$REPO" && [[ -n $(git status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null) ]] && echo ', src modified'))"
    echo "nginx: $(nginx -v 2>&1 | sed 's/^nginx version: //')  wrk: $(wrk -v 2>&1 | head -1 | awk '{print $2}')  h2load: $(h2load --version | awk '{print $2}')"
    echo "rounds=$ROUNDS duration=${DURATION}s warmup=${WARMUP}s seed=$SEED quick=$QUICK conns=$CONNS big_conns=$BIG_CONNS h2=${H2_CONNS}x$H2_STREAMS access_log=$ACCESS_LOG nginx_proxy_buffers=${NGINX_PROXY_BUFFERS:-default}"
    echo "servers on cpu $SERVER_CPU, load generator on cpu $LOAD_CPU; scenarios: $SCENARIOS"
} >"$OUT/settings.txt"

if ((${#TARGETS[@]})); then
    log "${#TARGETS[@]} targets x $ROUNDS rounds x (${WARMUP}s + ${DURATION}s)"
    for round in $(seq 1 "$ROUNDS"); do
        mapfile -t order < <(printf '%s\n' "${TARGETS[@]}" | awk -v seed="$((SEED + round))" 'BEGIN { srand(seed) } { print rand() "\t" $0 }' | sort -n | cut -f2)
        i=0
        for t in "${order[@]}"; do
            i=$((i + 1))
            run_one "$round" "$i" "${t%%:*}" "${t#*:}"
        done
    done
fi

# ---------------------------------------------------------------- idle
EXTRA=$OUT/extra.tsv
: >"$EXTRA"
extra() { printf '%s\t%s\n' "$1" "$2" >>"$EXTRA"; }
extra routes "$ROUTES"
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

hold_idle() { # port path pid-list label ; writes "rss_before rss_with still_open cpu_ms" to $WORK/idle.result
    local port=$1 path=$2 tree=$3 label=$4 fifo=$WORK/idle.out before with=0 r p0 p1 line
    # shellcheck disable=SC2086
    before=$(rss_kib $tree)
    : >"$fifo"
    python3 "$BENCH_DIR/idle_conns.py" 127.0.0.1 "$port" "$IDLE_CONNS" "$path" "$IDLE_HOLD" >"$fifo" 2>&1 &
    local client=$!
    PIDS+=("$client")
    local deadline=$((SECONDS + 120))
    until grep -q '^READY' "$fifo"; do
        alive "$client" || break
        ((SECONDS < deadline)) || break
        sleep 0.2
    done
    # shellcheck disable=SC2086
    p0=$(cpu_ticks $tree)
    sleep 1
    for _ in $(seq 1 $((IDLE_HOLD > 2 ? IDLE_HOLD - 2 : 1))); do
        # shellcheck disable=SC2086
        r=$(rss_kib $tree)
        ((r > with)) && with=$r
        sleep 1
    done
    # shellcheck disable=SC2086
    p1=$(cpu_ticks $tree)
    wait "$client" 2>/dev/null || true
    cp "$fifo" "$OUT/raw/idle-$label.txt"
    line=$(grep '^READY' "$fifo" || echo "READY open=0 ok=0 failed=$IDLE_CONNS")
    log "idle $label: $line; $(grep '^HELD' "$fifo" || echo 'HELD ?')"
    local still
    still=$(awk -F'still_open=' '/^HELD/ { print $2 }' "$fifo")
    echo "$before $with ${still:-0} $(awk -v a="$p0" -v b="$p1" -v t="$(getconf CLK_TCK)" 'BEGIN { split(a, x, " "); split(b, y, " "); print (y[1] + y[2] - x[1] - x[2]) * 1000 / t }')" >"$WORK/idle.result"
}

if [[ " $SCENARIOS " == *" idle "* ]]; then
    log "idle: a fresh callout, then $IDLE_CONNS idle keep-alive connections (held ${IDLE_HOLD}s)"
    callout_config "$SPARE_PORT" >"$WORK/callout-idle.toml"
    start_callout callout-idle "$WORK/callout-idle.toml" "$SPARE_PORT"
    IDLE_PID=$LAST_PID
    sleep 1
    extra idle_rss_start_mib "$(mib "$(rss_kib "$IDLE_PID")")"
    curl -fsS -o /dev/null "http://127.0.0.1:$SPARE_PORT/up$SMALL_PATH" || log "idle: first request failed"
    sleep 1
    first=$(rss_kib "$IDLE_PID")
    extra idle_rss_first_mib "$(mib "$first")"
    hold_idle "$SPARE_PORT" "/up$SMALL_PATH" "$IDLE_PID" callout
    read -r _ with still cpu_ms <"$WORK/idle.result"
    extra idle_conns "$IDLE_CONNS"
    extra idle_hold "$((IDLE_HOLD > 2 ? IDLE_HOLD - 2 : 1))"
    extra idle_rss_conns_mib "$(mib "$with")"
    extra idle_kib_per_conn "$(awk -v a="$with" -v b="$first" -v n="$IDLE_CONNS" 'BEGIN { printf "%.2f", (a - b) / n }')"
    extra idle_cpu_ms_conns "$cpu_ms"
    extra idle_still_open "$still"
    sleep 1
    extra idle_rss_after_close_mib "$(mib "$(rss_kib "$IDLE_PID")")"
    alive "$IDLE_PID" || die "callout died in the idle scenario; see $OUT/raw/"
    kill -TERM "$IDLE_PID" 2>/dev/null || true


    # The same for a fresh nginx proxy (same config, room for the connections).
    nginx_proxy_conf nginx-idle "$((SPARE_PORT + 1))" "$((IDLE_CONNS + 1024))" >"$WORK/nginx-idle.conf"
    start_server nginx-idle nginx -p "$WORK/ngx" -c "$WORK/nginx-idle.conf" -e "$WORK/nginx-idle.err"
    NGINX_IDLE_PID=$LAST_PID
    wait_http "http://127.0.0.1:$((SPARE_PORT + 1))/up/" || die "nginx (idle) did not start"
    curl -fsS -o /dev/null "http://127.0.0.1:$((SPARE_PORT + 1))/up$SMALL_PATH" || log "idle: nginx first request failed"
    sleep 1
    hold_idle "$((SPARE_PORT + 1))" "/up$SMALL_PATH" "$(tree_pids "$NGINX_IDLE_PID")" nginx
    read -r before with still _ <"$WORK/idle.result"
    extra idle_nginx_rss_before_mib "$(mib "$before")"
    extra idle_nginx_rss_conns_mib "$(mib "$with")"
    extra idle_nginx_kib_per_conn "$(awk -v a="$with" -v b="$before" -v n="$IDLE_CONNS" 'BEGIN { printf "%.2f", (a - b) / n }')"
    extra idle_nginx_still_open "$still"
    kill -TERM "$NGINX_IDLE_PID" 2>/dev/null || true
fi
extra callout_rss_at_start_mib "$(mib "$CALLOUT_IDLE_RSS")"

# ---------------------------------------------------------------- startup
if [[ " $SCENARIOS " == *" startup "* ]]; then
    port=$((SPARE_PORT + 2))
    for n in 1 "$STARTUP_ROUTES" "$ROUTES"; do
        python3 "$BENCH_DIR/gen_config.py" "$n" "$port" "http://127.0.0.1:$UPSTREAM_PORT" \
            "http://127.0.0.1:$TOKEN_PORT/token" >"$WORK/startup-$n.toml"
        line=$(RUST_LOG=warn python3 "$BENCH_DIR/startup.py" "$CALLOUT_BIN" "$WORK/startup-$n.toml" "$port" "$STARTUP_RUNS" "$SERVER_CPU") ||
            { log "startup with $n named credentials failed: $line"; continue; }
        log "startup, $n named credentials: $line"
        echo "$n $line" >>"$OUT/raw/startup.txt"
        extra "label:startup: process start to first 200 from /.callout/ready, $n named credential(s), ms (median of $STARTUP_RUNS, min-max)" \
            "$(sed 's/.*median_ms=\([0-9.]*\) min_ms=\([0-9.]*\) max_ms=\([0-9.]*\).*/\1 (\2-\3)/' <<<"$line")"
    done
    rm -f "$WORK"/startup-*.toml
fi

# ---------------------------------------------------------------- table
notes=()
tokens=$(curl -fsS "http://127.0.0.1:$TOKEN_PORT/count" 2>/dev/null || echo '?')
notes+=("token endpoint served $tokens token requests in the whole run.")
[[ -s $WORK/upstream.err ]] && notes+=("upstream nginx logged: $(grep -c . "$WORK/upstream.err") lines (raw/upstream.err).")
[[ -s $WORK/nginx-proxy.err ]] && notes+=("nginx proxy logged: $(grep -c . "$WORK/nginx-proxy.err") lines (raw/nginx-proxy.err).")
for f in callout callout-routes callout-idle; do
    [[ -s $WORK/$f.log ]] && notes+=("$f logged $(grep -c . "$WORK/$f.log") lines at RUST_LOG=$CALLOUT_LOG (raw/$f.log).")
done
extra notes "${notes[*]}"
python3 "$BENCH_DIR/summarize.py" "$OUT" >"$OUT/table.md"
echo
cat "$OUT/table.md"
echo
log "raw data and table: $OUT"
