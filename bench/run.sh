#!/usr/bin/env bash
# Side-by-side benchmark of weir against HAProxy and NGINX (the spec is BENCH.md in shared/;
# bench/README.md says how to run and read it).
#
#   bench/run.sh --quick              # ~4 min: 3 interleaved rounds, 1 s per run, iperf3 -t 5
#   bench/run.sh --full               # ~12 min: 5 rounds, 2 s per run, iperf3 -t 10
#   bench/run.sh --only tcp_rr        # one scenario while iterating (phase one unless --phase)
#   bench/run.sh --rounds 7 --duration 5 --phase 2
#
# Everything runs on 127.0.0.1 ports checked free at start; the script stops only the processes
# it started (by PID, on exit). Results: a table on stdout and bench/out/results.md; raw tool
# outputs in bench/out/raw/.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
OUT=${WEIR_BENCH_OUT:-$HERE/out}
REPORT=(python3 "$HERE/report.py")

# ------------------------------------------------------------------------------------------
# Options
# ------------------------------------------------------------------------------------------
MODE=quick
ROUNDS=""
DURATION=""
BULK_SECONDS=""
ONLY=""
PHASES=""
IDLE_N=""
BUILD=1
ALL_SCENARIOS="idle_tcp idle_http tcp_rr tcp_conn tcp_bulk http_ka http_conn https_ka h2"

usage() {
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
    cat <<EOF

Options:
  --quick | --full      preset (default --quick)
  --only S[,S...]       scenarios: ${ALL_SCENARIOS// /, }
  --phase 1|2|1,2       phases to run (default: both; with --only, phase 1)
  --rounds N            interleaved rounds per scenario (quick 3, full 5)
  --duration S          seconds per wrk/h2load run (quick 1, full 2)
  --bulk-seconds S      iperf3 -t (quick 5, full 10)
  --idle N              idle connections to hold (default 10000, capped by the fd limit)
  --no-build            use the existing target/release/weir
EOF
}

while (($#)); do
    case $1 in
        --quick) MODE=quick ;;
        --full) MODE=full ;;
        --only) ONLY=${2//,/ }; shift ;;
        --phase) PHASES=${2//,/ }; shift ;;
        --rounds) ROUNDS=$2; shift ;;
        --duration) DURATION=$2; shift ;;
        --bulk-seconds) BULK_SECONDS=$2; shift ;;
        --idle) IDLE_N=$2; shift ;;
        --no-build) BUILD=0 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

if [[ $MODE == quick ]]; then
    : "${ROUNDS:=3}" "${DURATION:=1}" "${BULK_SECONDS:=5}"
    PHASE2_SCENARIOS="tcp_rr"
else
    : "${ROUNDS:=5}" "${DURATION:=2}" "${BULK_SECONDS:=10}"
    PHASE2_SCENARIOS="tcp_rr http_ka"
fi
PHASE1_SCENARIOS=$ALL_SCENARIOS
if [[ -n $ONLY ]]; then
    for s in $ONLY; do
        [[ " $ALL_SCENARIOS " == *" $s "* ]] || { echo "unknown scenario: $s" >&2; exit 2; }
    done
    PHASE1_SCENARIOS=$ONLY
    PHASE2_SCENARIOS=$ONLY
    : "${PHASES:=1}"
fi
: "${PHASES:=1 2}"
for n in "$ROUNDS" "$DURATION" "$BULK_SECONDS" ${IDLE_N:+"$IDLE_N"}; do
    [[ $n =~ ^[1-9][0-9]*$ ]] || { echo "not a positive number: $n" >&2; exit 2; }
done
for p in $PHASES; do
    [[ $p == 1 || $p == 2 ]] || { echo "no such phase: $p" >&2; exit 2; }
done

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ------------------------------------------------------------------------------------------
# Tools: install what is missing from Debian's packages (root only), then stop any service
# the packages started, so that only our own instances run.
# ------------------------------------------------------------------------------------------
install_tools() {
    local -A pkg_of=([haproxy]=haproxy [nginx]=nginx [wrk]=wrk [h2load]=nghttp2-client
        [iperf3]=iperf3 [taskset]=util-linux [ss]=iproute2 [openssl]=openssl [python3]=python3)
    local need=() tool
    for tool in "${!pkg_of[@]}"; do
        command -v "$tool" >/dev/null 2>&1 || need+=("${pkg_of[$tool]}")
    done
    # NGINX's stream (TCP proxy) module is a separate package on Debian.
    [[ -e /usr/lib/nginx/modules/ngx_stream_module.so ]] || need+=(libnginx-mod-stream)
    ((${#need[@]})) || return 0
    [[ $(id -u) == 0 ]] || die "missing packages (${need[*]}); run as root or install them"
    log "installing: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    local svc
    for svc in haproxy nginx iperf3; do
        if [[ -s /run/$svc.pid ]] && kill -0 "$(cat "/run/$svc.pid")" 2>/dev/null; then
            log "stopping the $svc service the package started"
            if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
                systemctl stop "$svc" || true
            else
                service "$svc" stop || true
            fi
        fi
    done
}
export PATH=$PATH:/usr/sbin:/sbin # haproxy and nginx live in sbin
install_tools

# ------------------------------------------------------------------------------------------
# Processes we start: every PID goes into PIDS; the EXIT trap stops exactly those.
# ------------------------------------------------------------------------------------------
PIDS=()
declare -A PID_OF=()

stop_pids() {
    local pid alive=()
    for pid in "$@"; do
        kill -0 "$pid" 2>/dev/null && { kill -TERM "$pid" 2>/dev/null || true; alive+=("$pid"); }
    done
    local i
    for i in $(seq 50); do
        local still=()
        for pid in "${alive[@]}"; do kill -0 "$pid" 2>/dev/null && still+=("$pid"); done
        ((${#still[@]})) || return 0
        alive=("${still[@]}")
        sleep 0.1
    done
    for pid in "${alive[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if ((${#PIDS[@]})); then
        log "stopping ${#PIDS[@]} process(es) we started"
        # Reverse order: proxies (and their workers) before the backends.
        local rev=() i
        for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do rev+=("${PIDS[i]}"); done
        stop_pids "${rev[@]}"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# add_pids PID...: more processes to stop at exit (workers of a master we started).
add_pids() { PIDS+=("$@"); }
# forget PID...: processes already stopped (so a reused PID is never signalled at exit).
forget() {
    local keep=() p q drop
    for p in "${PIDS[@]}"; do
        drop=0
        for q in "$@"; do [[ $p == "$q" ]] && drop=1; done
        ((drop)) || keep+=("$p")
    done
    PIDS=("${keep[@]}")
}

# start NAME CORES CMD...: start CMD pinned to CORES, output to logs/NAME.log.
start() {
    local name=$1 cores=$2
    shift 2
    taskset -c "$cores" "$@" >"$OUT/logs/$name.log" 2>&1 &
    PIDS+=("$!")
    PID_OF[$name]=$!
}

# children PID: the direct children of a process (NGINX workers of a master).
children() {
    cat "/proc/$1/task/$1/children" 2>/dev/null || true
}

listening() { [[ -n $(ss -Hltn "sport = :$1" 2>/dev/null) ]]; }

# wait_listen NAME PORT...: wait until every port listens; false (with the log's tail shown)
# if NAME's process died or 10 s passed.
wait_listen() {
    local name=$1 port i
    shift
    for port in "$@"; do
        for i in $(seq 100); do
            listening "$port" && break
            kill -0 "${PID_OF[$name]}" 2>/dev/null || break
            sleep 0.1
        done
        if ! listening "$port"; then
            tail -20 "$OUT/logs/$name.log" >&2
            log "$name is not listening on $port"
            return 1
        fi
    done
}

# stop_named NAME...: stop processes we started by name (plus the workers we recorded).
stop_named() {
    local name pids=()
    for name in "$@"; do
        [[ -n ${PID_OF[$name]:-} ]] || continue
        pids+=("${PID_OF[$name]}")
        unset "PID_OF[$name]"
    done
    ((${#pids[@]})) || return 0
    stop_pids "${pids[@]}"
    forget "${pids[@]}"
}

# ------------------------------------------------------------------------------------------
# Set-up: output dir, fd limit, ports, weir binary, certificate, machine line.
# ------------------------------------------------------------------------------------------
mkdir -p "$OUT"
rm -rf "$OUT/raw" "$OUT/conf" "$OUT/logs" "$OUT/run"
rm -f "$OUT/runs.tsv" "$OUT/skips.tsv" "$OUT/meta.txt" "$OUT/results.md" "$OUT/weir-access.log"
mkdir -p "$OUT/raw" "$OUT/conf" "$OUT/logs" "$OUT/run" "$OUT/run/nginx-temp"
chmod 755 "$OUT" "$OUT/run" "$OUT/run/nginx-temp" # NGINX workers run as nobody
STARTED=$(date +%s)

# Idle connections need ~2 fds per connection in a proxy: raise the soft limit to the hard one
# (children inherit it) and hold as many connections as it allows, up to 10,000.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
FD_LIMIT=$(ulimit -n)
[[ $FD_LIMIT == unlimited ]] && FD_LIMIT=1048576
FD_CAP=$(((FD_LIMIT - 400) / 2 / 100 * 100))
if [[ -z $IDLE_N ]]; then
    IDLE_N=$((FD_CAP < 10000 ? FD_CAP : 10000))
    ((IDLE_N == 10000)) || log "fd limit $FD_LIMIT: holding $IDLE_N idle connections, not 10,000"
fi
MAXCONN=$(((FD_LIMIT - 200) / 2)) # HAProxy maxconn: two fds per proxied connection
WORKER_CONN=$((FD_LIMIT - 200))  # NGINX worker_connections (counts both sides)

read -r B1 B2 BTLS IPERF W_TCP W_BULK W_HTTP W_HTTPS WL_TCP H_TCP H_BULK H_HTTP H_HTTPS \
    N_TCP N_BULK N_HTTP N_HTTPS H_BULK_SPLICE W_BULK_SPLICE <<<"$("${REPORT[@]}" freeports 19)"
log "ports: backend $B1,$B2 (tls $BTLS), iperf3 $IPERF, weir $W_TCP.., haproxy $H_TCP.., nginx $N_TCP.."

# weir: build in release mode (reusing target/), and run a copy so that a concurrent rebuild
# cannot swap the binary under a run.
WEIR_OK=1
if ((BUILD)); then
    log "cargo build --release -p weir"
    if ! (cd "$ROOT" && cargo build --release -p weir 2>"$OUT/logs/cargo-build.log"); then
        tail -20 "$OUT/logs/cargo-build.log" >&2
        if [[ -x $ROOT/target/release/weir ]]; then
            log "warning: build failed; using the existing target/release/weir"
        else
            log "warning: build failed and there is no weir binary; weir runs are skipped"
            WEIR_OK=0
        fi
    fi
fi
WEIR=$OUT/run/weir
if [[ -x $ROOT/target/release/weir ]]; then
    cp "$ROOT/target/release/weir" "$WEIR"
else
    WEIR_OK=0
fi

# A self-signed ECDSA P-256 certificate for the HTTPS / HTTP/2 listeners (TLS 1.3 only).
CERT=$OUT/run/cert.pem KEY=$OUT/run/key.pem PEM=$OUT/run/cert+key.pem
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
    -keyout "$KEY" -out "$CERT" >/dev/null 2>&1 || die "openssl could not make a certificate"
cat "$CERT" "$KEY" >"$PEM"
chmod 644 "$KEY" "$PEM" # a throwaway key; the NGINX workers (nobody) must read it

MACHINE="nproc $(nproc), kernel $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
WEIR_REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')
git -C "$ROOT" diff --quiet HEAD -- crates 2>/dev/null || WEIR_REV="$WEIR_REV+uncommitted"
VERSIONS="weir $WEIR_REV; $(haproxy -v 2>&1 | head -1 | awk '{print "HAProxy", $3}'); $(nginx -v 2>&1 | sed 's/.*nginx\//NGINX /'); wrk $(wrk -v 2>&1 | head -1 | awk '{print $2}'); $(h2load --version | head -1); $(iperf3 --version | head -1 | awk '{print "iperf3", $2}')"
{
    echo "machine=$MACHINE"
    echo "versions=$VERSIONS"
    echo "mode=$MODE: $ROUNDS rounds, ${DURATION}s per wrk/h2load run, iperf3 -t $BULK_SECONDS, $IDLE_N idle connections, fd limit $FD_LIMIT"
    echo "started=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
} >"$OUT/meta.txt"
log "machine: $MACHINE"

# ------------------------------------------------------------------------------------------
# Configs
# ------------------------------------------------------------------------------------------

# The backend: one NGINX worker answering a fixed small body on two ports (= two servers),
# keep-alive on and never capped; a third port with TLS + HTTP/2 for the direct HTTPS rows.
write_backend_conf() {
    cat >"$OUT/conf/backend.conf" <<EOF
worker_processes 1;
worker_rlimit_nofile $FD_LIMIT;
daemon off;
pid $OUT/run/backend.pid;
error_log $OUT/logs/backend-error.log warn;
events { worker_connections $WORKER_CONN; }
http {
    access_log off;
    default_type text/plain;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    client_body_temp_path $OUT/run/nginx-temp/backend-body;
    proxy_temp_path $OUT/run/nginx-temp/backend-proxy;
    fastcgi_temp_path $OUT/run/nginx-temp/backend-fastcgi;
    uwsgi_temp_path $OUT/run/nginx-temp/backend-uwsgi;
    scgi_temp_path $OUT/run/nginx-temp/backend-scgi;
    server {
        listen 127.0.0.1:$B1 backlog=4096;
        listen 127.0.0.1:$B2 backlog=4096;
        listen 127.0.0.1:$BTLS ssl http2 backlog=4096;
        ssl_certificate $CERT;
        ssl_certificate_key $KEY;
        ssl_protocols TLSv1.3;
        location / { return 200 "hello from the weir bench backend, a fixed small body.\n"; }
    }
}
EOF
}

# HAProxy: mode tcp for the L4 rows, mode http with http-reuse safe for the L7 rows,
# round-robin over the two backend ports, no logging, health checks every 2 s like weir's.
write_haproxy_conf() {
    local threads=$1
    cat >"$OUT/conf/haproxy.cfg" <<EOF
global
    nbthread $threads
    maxconn $MAXCONN
    # Pipes for the splice backend (2 fds each): few, so maxconn still fits the fd limit.
    maxpipes 32
    pidfile $OUT/run/haproxy.pid

defaults
    maxconn $MAXCONN
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
    timeout http-request 10s

frontend tcp_fe
    mode tcp
    bind 127.0.0.1:$H_TCP
    default_backend tcp_be

backend tcp_be
    mode tcp
    balance roundrobin
    server s1 127.0.0.1:$B1 check inter 2s
    server s2 127.0.0.1:$B2 check inter 2s

frontend bulk_fe
    mode tcp
    bind 127.0.0.1:$H_BULK
    default_backend bulk_be

backend bulk_be
    mode tcp
    server iperf 127.0.0.1:$IPERF

# The same with splice forced both ways (weir splices bulk transfers by itself).
frontend bulk_splice_fe
    mode tcp
    bind 127.0.0.1:$H_BULK_SPLICE
    default_backend bulk_splice_be

backend bulk_splice_be
    mode tcp
    option splice-request
    option splice-response
    server iperf 127.0.0.1:$IPERF

frontend http_fe
    mode http
    bind 127.0.0.1:$H_HTTP
    bind 127.0.0.1:$H_HTTPS ssl crt $PEM alpn h2,http/1.1 ssl-min-ver TLSv1.3
    default_backend http_be

backend http_be
    mode http
    balance roundrobin
    http-reuse safe
    server s1 127.0.0.1:$B1 check inter 2s
    server s2 127.0.0.1:$B2 check inter 2s
EOF
}

# NGINX as a proxy: stream {} for L4, proxy_pass with an upstream keepalive pool for L7.
write_nginx_conf() {
    local workers=$1
    cat >"$OUT/conf/nginx.conf" <<EOF
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes $workers;
worker_rlimit_nofile $FD_LIMIT;
daemon off;
pid $OUT/run/nginx.pid;
error_log $OUT/logs/nginx-error.log warn;
events { worker_connections $WORKER_CONN; }
stream {
    upstream tcp_be { server 127.0.0.1:$B1; server 127.0.0.1:$B2; }
    upstream bulk_be { server 127.0.0.1:$IPERF; }
    server { listen 127.0.0.1:$N_TCP backlog=4096; proxy_pass tcp_be; }
    server { listen 127.0.0.1:$N_BULK; proxy_pass bulk_be; }
}
http {
    access_log off;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    client_body_temp_path $OUT/run/nginx-temp/body;
    proxy_temp_path $OUT/run/nginx-temp/proxy;
    fastcgi_temp_path $OUT/run/nginx-temp/fastcgi;
    uwsgi_temp_path $OUT/run/nginx-temp/uwsgi;
    scgi_temp_path $OUT/run/nginx-temp/scgi;
    upstream http_be {
        server 127.0.0.1:$B1;
        server 127.0.0.1:$B2;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$N_HTTP backlog=4096;
        listen 127.0.0.1:$N_HTTPS ssl http2 backlog=4096;
        ssl_certificate $CERT;
        ssl_certificate_key $KEY;
        ssl_protocols TLSv1.3;
        location / {
            proxy_pass http://http_be;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
}

# weir: the pieces of its config. Only tcp listeners run today; the http/https listener pieces
# are checked with `weir check` and left out (their rows skipped) while weir rejects them.
weir_head() { # WORKERS ACCESS
    cat <<EOF
[runtime]
workers = $1
shutdown_grace = "1s"

[log]
access = "$2"

[[group]]
name = "backends"
algorithm = "rr"
servers = [{ address = "127.0.0.1:$B1" }, { address = "127.0.0.1:$B2" }]
[group.health_check]
kind = "tcp"
interval = "2s"

[[group]]
name = "iperf"
algorithm = "rr"
servers = [{ address = "127.0.0.1:$IPERF" }]
[group.health_check]
kind = "none"   # an iperf3 server takes any connection as a test's control connection
EOF
}
weir_listener() { # NAME PROTOCOL PORT GROUP [EXTRA-LINE]
    printf '\n[[listener]]\nname = "%s"\nprotocol = "%s"\nbind = "127.0.0.1:%s"\ngroup = "%s"\n%s\n' \
        "$1" "$2" "$3" "$4" "${5:-}"
}
# TLS as weir's config schema has it ([listener.tls], certificates = [{ cert, key }]).
WEIR_TLS_LINE="tls = { certificates = [{ cert = \"$CERT\", key = \"$KEY\" }], min_version = \"1.3\" }"

# weir_probe NAME FILE PORT: true if `weir check` accepts FILE and `weir run` then listens on
# PORT (a config can be valid before the data path for it lands); the reason in WEIR_WHY.
WEIR_WHY=""
weir_probe() {
    local name=$1 file=$2 port=$3 i
    if ! "$WEIR" check -c "$file" >"$OUT/logs/check-$name.log" 2>&1; then
        WEIR_WHY=$(grep -m1 'error' "$OUT/logs/check-$name.log" | sed "s|$OUT/conf/||" || true)
        return 1
    fi
    start "probe-$name" 0 "$WEIR" run -c "$file"
    for i in $(seq 50); do
        listening "$port" && break
        kill -0 "${PID_OF[probe-$name]}" 2>/dev/null || break
        sleep 0.1
    done
    if listening "$port" && kill -0 "${PID_OF[probe-$name]}" 2>/dev/null; then
        stop_named "probe-$name"
        return 0
    fi
    stop_named "probe-$name"
    WEIR_WHY=$(grep -m1 -i 'error' "$OUT/logs/probe-$name.log" || echo "weir run did not listen on $port")
    return 1
}

# Which weir listeners this build runs (decided once: `weir check`, then a short `weir run`).
WEIR_HTTP=0 WEIR_HTTPS=0 WEIR_SPLICE=0 WEIR_HTTP_WHY="" WEIR_HTTPS_WHY=""
detect_weir() {
    ((WEIR_OK)) || return 0
    { weir_head 1 off; weir_listener bench tcp "$W_TCP" backends; } >"$OUT/conf/weir-probe-tcp.toml"
    if ! weir_probe tcp "$OUT/conf/weir-probe-tcp.toml" "$W_TCP"; then
        log "weir cannot run the TCP config: $WEIR_WHY; weir runs are skipped"
        WEIR_OK=0
        return 0
    fi
    # `splice = true` on a tcp listener (bulk transfers through a kernel pipe), when the build
    # knows the setting: a second bulk row.
    { weir_head 1 off; weir_listener bench-bulk-splice tcp "$W_BULK_SPLICE" iperf "splice = true"; } \
        >"$OUT/conf/weir-probe-splice.toml"
    if "$WEIR" check -c "$OUT/conf/weir-probe-splice.toml" >"$OUT/logs/check-splice.log" 2>&1; then
        WEIR_SPLICE=1
    else
        log "weir: no splice setting in this build"
    fi
    { weir_head 1 off; weir_listener bench-http http "$W_HTTP" backends; } >"$OUT/conf/weir-probe-http.toml"
    if weir_probe http "$OUT/conf/weir-probe-http.toml" "$W_HTTP"; then WEIR_HTTP=1; else WEIR_HTTP_WHY=$WEIR_WHY; fi
    { weir_head 1 off; weir_listener bench-https https "$W_HTTPS" backends "$WEIR_TLS_LINE"; } >"$OUT/conf/weir-probe-https.toml"
    if weir_probe https "$OUT/conf/weir-probe-https.toml" "$W_HTTPS"; then WEIR_HTTPS=1; else WEIR_HTTPS_WHY=$WEIR_WHY; fi
    ((WEIR_HTTP)) || log "weir: http listener not available in this build ($WEIR_HTTP_WHY)"
    ((WEIR_HTTPS)) || log "weir: https listener not available in this build ($WEIR_HTTPS_WHY)"
}

write_weir_conf() { # WORKERS
    {
        weir_head "$1" off
        weir_listener bench tcp "$W_TCP" backends
        weir_listener bench-bulk tcp "$W_BULK" iperf
        ((WEIR_SPLICE)) && weir_listener bench-bulk-splice tcp "$W_BULK_SPLICE" iperf "splice = true"
        ((WEIR_HTTP)) && weir_listener bench-http http "$W_HTTP" backends
        ((WEIR_HTTPS)) && weir_listener bench-https https "$W_HTTPS" backends "$WEIR_TLS_LINE"
        true
    } >"$OUT/conf/weir.toml"
    # The same TCP listener with the access log on (JSON lines to a file), as its own process.
    { weir_head "$1" "$OUT/weir-access.log"; weir_listener bench tcp "$WL_TCP" backends; } \
        >"$OUT/conf/weir-log.toml"
}

# ------------------------------------------------------------------------------------------
# Starting and stopping the servers
# ------------------------------------------------------------------------------------------
declare -A WORKERS_OF=() # name -> PIDs whose CPU/RSS count (NGINX: the workers)

start_backends() {
    write_backend_conf
    nginx -t -q -e "$OUT/logs/backend-error.log" -c "$OUT/conf/backend.conf" ||
        die "backend NGINX config rejected"
    start backend 0 nginx -e "$OUT/logs/backend-error.log" -c "$OUT/conf/backend.conf"
    start iperf3 0 iperf3 -s -B 127.0.0.1 -p "$IPERF"
    wait_listen backend "$B1" "$B2" "$BTLS" || die "the backend NGINX did not start"
    wait_listen iperf3 "$IPERF" || die "the iperf3 server did not start"
    WORKERS_OF[backend]=$(children "${PID_OF[backend]}")
    # shellcheck disable=SC2086 # a list of PIDs
    add_pids ${WORKERS_OF[backend]}
    WORKERS_OF[iperf3]=${PID_OF[iperf3]}
}

start_proxies() { # PHASE
    local phase=$1 cores=0 workers=1
    if [[ $phase == 2 ]]; then cores=0,1 workers=2; fi
    write_haproxy_conf "$workers"
    write_nginx_conf "$workers"
    haproxy -c -q -f "$OUT/conf/haproxy.cfg" || die "HAProxy config rejected"
    nginx -t -q -e "$OUT/logs/nginx-error.log" -c "$OUT/conf/nginx.conf" || die "NGINX config rejected"
    start haproxy "$cores" haproxy -db -f "$OUT/conf/haproxy.cfg"
    start nginx "$cores" nginx -e "$OUT/logs/nginx-error.log" -c "$OUT/conf/nginx.conf"
    wait_listen haproxy "$H_TCP" "$H_BULK" "$H_HTTP" "$H_HTTPS" "$H_BULK_SPLICE" || die "HAProxy did not start"
    wait_listen nginx "$N_TCP" "$N_BULK" "$N_HTTP" "$N_HTTPS" || die "NGINX did not start"
    WORKERS_OF[haproxy]=${PID_OF[haproxy]}
    sleep 0.2
    WORKERS_OF[nginx]=$(children "${PID_OF[nginx]}")
    # shellcheck disable=SC2086 # a list of PIDs
    add_pids ${WORKERS_OF[nginx]}
    if ((WEIR_OK)); then
        write_weir_conf "$workers"
        start weir "$cores" "$WEIR" run -c "$OUT/conf/weir.toml"
        start weir-log "$cores" "$WEIR" run -c "$OUT/conf/weir-log.toml"
        local ports=("$W_TCP" "$W_BULK")
        ((WEIR_SPLICE)) && ports+=("$W_BULK_SPLICE")
        ((WEIR_HTTP)) && ports+=("$W_HTTP")
        ((WEIR_HTTPS)) && ports+=("$W_HTTPS")
        if wait_listen weir "${ports[@]}" && wait_listen weir-log "$WL_TCP"; then
            WORKERS_OF[weir]=${PID_OF[weir]}
            WORKERS_OF[weir-log]=${PID_OF[weir-log]}
        else
            log "weir did not start (see bench/out/logs/weir*.log); its rows are skipped"
            stop_named weir weir-log
            WEIR_OK=0
        fi
    fi
    sleep 1 # let the first health checks pass
    log "phase $phase: haproxy ${PID_OF[haproxy]}, nginx ${PID_OF[nginx]} (workers ${WORKERS_OF[nginx]//$'\n'/ }), weir ${PID_OF[weir]:-none}, on cores $cores"
}

PROXIES_USED=0 HELD_IDLE=0
restart_proxies() {
    stop_proxies
    start_proxies "$PHASE"
    PROXIES_USED=0 HELD_IDLE=0
}

stop_proxies() {
    # NGINX workers exit with their master; stop them too should the master not take them.
    local w
    read -r -a w <<<"${WORKERS_OF[nginx]:-}"
    stop_named weir weir-log haproxy nginx
    ((${#w[@]})) && stop_pids "${w[@]}"
    forget "${w[@]}"
    WORKERS_OF[weir]="" WORKERS_OF[weir-log]="" WORKERS_OF[haproxy]="" WORKERS_OF[nginx]=""
}

# ------------------------------------------------------------------------------------------
# Measuring
# ------------------------------------------------------------------------------------------
PHASE=1
skip() { # SCENARIO TARGET WHY
    printf '%s\t%s\t%s\t%s\n' "$PHASE" "$1" "$2" "$3" >>"$OUT/skips.tsv"
    log "skip $1/$2: $3"
}

# Proxy name for a target, and the PIDs whose CPU is counted for it.
proxy_of() {
    case $1 in
        weir | weir+splice) echo weir ;; weir+log) echo weir-log ;;
        haproxy | haproxy+splice) echo haproxy ;;
        nginx) echo nginx ;;
        *) echo "" ;;
    esac
}
ticks() { # NAME -> CPU ticks of its counted PIDs, or "-"
    [[ -n $1 && -n ${WORKERS_OF[$1]:-} ]] || { echo -; return; }
    # shellcheck disable=SC2086
    "${REPORT[@]}" cpu ${WORKERS_OF[$1]}
}
alive() { # NAME
    local pid
    for pid in ${WORKERS_OF[$1]:-}; do kill -0 "$pid" 2>/dev/null || return 1; done
}

# measure SCENARIO TARGET ROUND TOOL BACKEND CMD...: run a load generator on core 1 and record
# the CPU the proxy and the backend spent meanwhile.
measure() {
    local scen=$1 target=$2 round=$3 tool=$4 backend=$5
    shift 5
    local proxy raw
    proxy=$(proxy_of "$target")
    raw=raw/p$PHASE-$scen-$target-r$round.txt
    if [[ -n $proxy ]] && ! alive "$proxy"; then
        echo "proxy $proxy is not running" >"$OUT/$raw"
        printf '%s\t%s\t%s\t%s\t%s\t%s\t-\t-\n' "$PHASE" "$scen" "$target" "$round" "$tool" "$raw" >>"$OUT/runs.tsv"
        return 0
    fi
    local p0 b0 p1 b1
    p0=$(ticks "$proxy") b0=$(ticks "$backend")
    timeout -k 5 $((DURATION + BULK_SECONDS + 30)) taskset -c 1 "$@" >"$OUT/$raw" 2>&1 || true
    p1=$(ticks "$proxy") b1=$(ticks "$backend")
    local pt=- bt=-
    [[ $p0 == - ]] || pt=$((p1 - p0))
    [[ $b0 == - ]] || bt=$((b1 - b0))
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$PHASE" "$scen" "$target" "$round" "$tool" "$raw" "$pt" "$bt" >>"$OUT/runs.tsv"
    sleep 0.3 # let closed connections settle between runs
}

# The targets of a scenario: "name:port" pairs, and skip lines for weir when it cannot run it.
targets_for() { # SCENARIO
    local t=()
    case $1 in
        idle_tcp) t=("weir:$W_TCP" "haproxy:$H_TCP" "nginx:$N_TCP") ;;
        tcp_rr) t=("direct:$B1" "weir:$W_TCP" "haproxy:$H_TCP" "nginx:$N_TCP") ;;
        # weir writes one access-log record per connection: its cost shows per connection.
        tcp_conn) t=("direct:$B1" "weir:$W_TCP" "weir+log:$WL_TCP" "haproxy:$H_TCP" "nginx:$N_TCP") ;;
        tcp_bulk) t=("direct:$IPERF" "weir:$W_BULK" "weir+splice:$W_BULK_SPLICE" "haproxy:$H_BULK"
            "haproxy+splice:$H_BULK_SPLICE" "nginx:$N_BULK") ;;
        idle_http) t=("weir:$W_HTTP" "haproxy:$H_HTTP" "nginx:$N_HTTP") ;;
        http_ka | http_conn) t=("direct:$B1" "weir:$W_HTTP" "haproxy:$H_HTTP" "nginx:$N_HTTP") ;;
        https_ka | h2) t=("direct:$BTLS" "weir:$W_HTTPS" "haproxy:$H_HTTPS" "nginx:$N_HTTPS") ;;
    esac
    local out=() x
    for x in "${t[@]}"; do
        case ${x%%:*} in
            weir | weir+log | weir+splice)
                ((WEIR_OK)) || continue
                [[ ${x%%:*} != weir+splice ]] || ((WEIR_SPLICE)) || continue
                case $1 in
                    idle_http | http_ka | http_conn) ((WEIR_HTTP)) || continue ;;
                    https_ka | h2) ((WEIR_HTTPS)) || continue ;;
                esac
                ;;
        esac
        out+=("$x")
    done
    echo "${out[@]}"
}

report_weir_skips() { # SCENARIO
    if ((!WEIR_OK)); then
        skip "$1" weir "no runnable weir binary (see bench/out/logs)"
        return
    fi
    case $1 in
        idle_http | http_ka | http_conn)
            ((WEIR_HTTP)) || skip "$1" weir "weir: http listener not available in this build ($WEIR_HTTP_WHY)" ;;
        https_ka | h2)
            ((WEIR_HTTPS)) || skip "$1" weir "weir: https listener not available in this build ($WEIR_HTTPS_WHY)" ;;
    esac
}

# idle_run SCENARIO TARGET PORT: open IDLE_N keep-alive connections (one request each) through
# the proxy, hold them, and record its RSS before and after.
idle_run() {
    local scen=$1 target=$2 port=$3 proxy raw ready
    proxy=$(proxy_of "$target")
    raw=raw/p$PHASE-$scen-$target-r1.txt
    ready=$OUT/run/idle-ready
    rm -f "$ready"
    local before after i
    # shellcheck disable=SC2086
    before=$("${REPORT[@]}" rss ${WORKERS_OF[$proxy]})
    taskset -c 1 python3 "$HERE/idle_conns.py" --port "$port" --count "$IDLE_N" \
        --ready-file "$ready" --hold 120 >"$OUT/logs/idle-$target.log" 2>&1 &
    local client=$!
    PIDS+=("$client")
    for i in $(seq 600); do
        [[ -e $ready ]] && break
        kill -0 "$client" 2>/dev/null || break
        sleep 0.1
    done
    sleep 1 # let the proxy settle (allocator, lazily created buffers)
    # shellcheck disable=SC2086
    after=$("${REPORT[@]}" rss ${WORKERS_OF[$proxy]})
    {
        cat "$ready" 2>/dev/null || echo "established=0"
        echo "rss_before_kib=$before"
        echo "rss_after_kib=$after"
    } >"$OUT/$raw"
    stop_pids "$client"
    forget "$client"
    printf '%s\t%s\t%s\t1\tidle\t%s\t-\t-\n' "$PHASE" "$scen" "$target" "$raw" >>"$OUT/runs.tsv"
    log "  $target: $(tr '\n' ' ' <"$OUT/$raw")"
    sleep 2 # the proxy closes its server-side connections
}

# run_scenario SCENARIO: interleaved rounds (A B C A B C ...) over its targets.
run_scenario() {
    local scen=$1 targets round x target port
    report_weir_skips "$scen"
    read -r -a targets <<<"$(targets_for "$scen")"
    log "phase $PHASE: $scen (${targets[*]%%:*})"
    case $scen in
        idle_*)
            # Fresh proxy processes: HAProxy's pools and malloc keep freed memory, so a proxy
            # that already held connections would show a smaller growth. Each target touches
            # only its own proxy, so one restart per idle scenario is enough.
            ((PROXIES_USED)) && restart_proxies
            for x in "${targets[@]}"; do idle_run "$scen" "${x%%:*}" "${x#*:}"; done
            PROXIES_USED=1 HELD_IDLE=1
            return
            ;;
    esac
    # ... and the throughput scenarios get processes that did not just hold 10,000 connections.
    ((HELD_IDLE)) && restart_proxies
    PROXIES_USED=1 HELD_IDLE=0
    for ((round = 1; round <= ROUNDS; round++)); do
        for x in "${targets[@]}"; do
            target=${x%%:*} port=${x#*:}
            case $scen in
                # TCP request/response: HTTP keep-alive requests carried by a TCP listener.
                tcp_rr | http_ka)
                    measure "$scen" "$target" "$round" wrk backend \
                        wrk -t1 -c50 -d"${DURATION}s" --latency "http://127.0.0.1:$port/" ;;
                # A new connection per request: CPU per connection (accept, connect, close).
                tcp_conn | http_conn)
                    measure "$scen" "$target" "$round" wrk backend \
                        wrk -t1 -c50 -d"${DURATION}s" --latency -H 'Connection: close' \
                        "http://127.0.0.1:$port/" ;;
                # One bulk TCP stream from an iperf3 client to an iperf3 server.
                tcp_bulk)
                    measure "$scen" "$target" "$round" iperf3 iperf3 \
                        iperf3 -c 127.0.0.1 -p "$port" -t "$BULK_SECONDS" -P 1 -J ;;
                # HTTPS keep-alive over TLS 1.3 (one handshake per connection).
                https_ka)
                    measure "$scen" "$target" "$round" wrk backend \
                        wrk -t1 -c50 -d"${DURATION}s" --latency "https://127.0.0.1:$port/" ;;
                # HTTP/2 clients: ALPN h2, 50 connections x 10 concurrent streams.
                h2)
                    measure "$scen" "$target" "$round" h2load backend \
                        h2load -t1 -c50 -m10 -D "$DURATION" "https://127.0.0.1:$port/" ;;
            esac
        done
    done
}

# ------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------
detect_weir
start_backends
log "backend NGINX ${PID_OF[backend]} (worker ${WORKERS_OF[backend]}), iperf3 ${PID_OF[iperf3]}, on core 0"
for PHASE in $PHASES; do
    start_proxies "$PHASE"
    PROXIES_USED=0 HELD_IDLE=0
    scenarios=$PHASE1_SCENARIOS
    [[ $PHASE == 2 ]] && scenarios=$PHASE2_SCENARIOS
    for scen in $scenarios; do
        run_scenario "$scen"
    done
    stop_proxies
done

echo "elapsed=$(($(date +%s) - STARTED)) s" >>"$OUT/meta.txt"
"${REPORT[@]}" summarize "$OUT"
log "results: $OUT/results.md; raw outputs: $OUT/raw/"
