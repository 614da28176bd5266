#!/usr/bin/env bash
# Load bench: wrk against `stowage serve` (local-fs, both policies, the ledger on) and against
# nginx serving the same files statically (the physical limit), in the same run.
#
#   tests/benches/load.sh            # 30 s per run, 64 connections
#   LOAD_SECS=10 tests/benches/load.sh
#
# Prints, for 4 KiB GET and PUT: requests/s, p50/p99 latency, errors (must be 0) and the
# server's peak RSS; then /healthz p50/p99 while two 1 GiB PUTs commit. Installs wrk and nginx
# from Debian's packages when missing. Servers listen on 127.0.0.1 only and stop on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."

secs=${LOAD_SECS:-30}
conns=${LOAD_CONNECTIONS:-64}
files=256

missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    echo "== installing ${missing[*]} from Debian's packages"
    $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
nginx=$(command -v nginx || echo /usr/sbin/nginx)

echo "== building stowage (release)"
cargo build --release -q -p stowage
stowage=$PWD/target/release/stowage

work=$(mktemp -d "${TMPDIR:-/tmp}/stowage-load.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
key=load-key-$(python3 -c 'import secrets; print(secrets.token_hex(16))')

# --- stowage: local-fs, both policies, the ledger, dev mode (plain HTTP on loopback) ---------
cat >"$work/stowage.toml" <<EOF
role = "services"
[disks.local]
plugin = "local-fs"
grant = { dir = "data" }
[storage]
default = "local"
[[policies]]
plugin = "role-policy"
[[policies]]
plugin = "phi-tracking"
[ledger]
path = "ledger.sqlite"
[server]
dev_mode = true
api_keys = [{ name = "load", key = "$key" }]
EOF
mkdir -p "$work/static/v1/objects/default/load"
head -c 4096 /dev/urandom >"$work/4k.bin"
head -c $((1024 * 1024 * 1024)) /dev/zero >"$work/1g.bin"
for i in $(seq 0 $((files - 1))); do
    cp "$work/4k.bin" "$work/static/v1/objects/default/load/$i.bin"
done
(cd "$work" && for i in $(seq 0 $((files - 1))); do "$stowage" put "default:load/$i.bin" 4k.bin >/dev/null; done)

# The same host without policies (so without the ledger): what the pipeline's audit costs.
mkdir -p "$work/bare"
sed -e '/^\[\[policies\]\]$/,+1d' -e 's|dir = "data"|dir = "../data"|' -e 's|ledger.sqlite|bare-ledger.sqlite|' "$work/stowage.toml" >"$work/bare/stowage.toml"
# nginx's workers run as an unprivileged user: let them read the files.
chmod 755 "$work"
chmod -R a+rX "$work/static"

start_stowage() { # DIR -> sets port and pid
    port=$(free_port)
    (cd "$1" && exec "$stowage" serve --listen "127.0.0.1:$port" >"$1/stowage.out" 2>"$1/stowage.log") &
    pid=$!
    pids+=("$pid")
    for _ in $(seq 1 100); do
        grep -q "serving on" "$1/stowage.out" 2>/dev/null && return
        sleep 0.1
    done
    echo "stowage did not start:"; cat "$1/stowage.log"; exit 1
}
start_stowage "$work/bare"
bport=$port
bpid=$pid

start_stowage "$work"
sport=$port
spid=$pid

# --- nginx: the same files, static ----------------------------------------------------------
nport=$(free_port)
mkdir -p "$work/nginx"
cat >"$work/nginx/nginx.conf" <<EOF
daemon off;
worker_processes auto;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $work/nginx/body;
    proxy_temp_path $work/nginx/proxy;
    fastcgi_temp_path $work/nginx/fastcgi;
    uwsgi_temp_path $work/nginx/uwsgi;
    scgi_temp_path $work/nginx/scgi;
    server {
        listen 127.0.0.1:$nport;
        root $work/static;
        keepalive_requests 1000000;
    }
}
EOF
"$nginx" -c "$work/nginx/nginx.conf" -p "$work/nginx" &
pids+=("$!")
sleep 0.5

# --- wrk scripts: spread over the files; print one line of numbers at the end ---------------
cat >"$work/report.lua" <<'EOF'
done = function(summary, latency, requests)
    local e = summary.errors
    local errors = e.connect + e.read + e.write + e.status + e.timeout
    io.write(string.format("RESULT %.0f %.2f %.2f %d\n",
        summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(99) / 1000, errors))
end
EOF
cat >"$work/get.lua" <<EOF
local n = 0
request = function()
    n = n + 1
    return wrk.format("GET", "/v1/objects/default/load/" .. (n % $files) .. ".bin", { ["Authorization"] = "Bearer $key" })
end
EOF
cat "$work/report.lua" >>"$work/get.lua"
cat >"$work/put.lua" <<EOF
local n = 0
local f = io.open("$work/4k.bin", "rb")
local body = f:read("*a")
f:close()
request = function()
    n = n + 1
    return wrk.format("PUT", "/v1/objects/default/load/put-" .. (n % $files) .. ".bin",
        { ["Authorization"] = "Bearer $key", ["Content-Type"] = "application/octet-stream" }, body)
end
EOF
cat "$work/report.lua" >>"$work/put.lua"
cat >"$work/healthz.lua" <<'EOF'
request = function() return wrk.format("GET", "/healthz") end
EOF
cat "$work/report.lua" >>"$work/healthz.lua"

rss_mib() { awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }
run() { # URL SCRIPT [SECS [CONNS]] -> "rps p50 p99 errors"
    wrk -t2 -c"${4:-$conns}" -d"${3:-$secs}s" --timeout 10s -s "$2" "$1" | awk '/^RESULT/ { print $2, $3, $4, $5 }'
}
line() { # WHAT "rps p50 p99 errors" RSS
    read -r rps p50 p99 errors <<<"$2"
    printf "%-28s %10s req/s   p50 %7s ms   p99 %7s ms   errors %s   peak RSS %s MiB\n" "$1" "$rps" "$p50" "$p99" "$errors" "$3"
}

echo "== 4 KiB objects, $conns connections, ${secs} s each (wrk -t2; 2 cores shared by wrk and the server)"
ng=$(run "http://127.0.0.1:$nport" "$work/get.lua")
line "nginx GET (static)" "$ng" "$(rss_mib "$(cat "$work/nginx/nginx.pid")")"
sg=$(run "http://127.0.0.1:$sport" "$work/get.lua")
line "stowage GET" "$sg" "$(rss_mib "$spid")"
bg=$(run "http://127.0.0.1:$bport" "$work/get.lua")
line "stowage GET, no policies" "$bg" "$(rss_mib "$bpid")"
sp=$(run "http://127.0.0.1:$sport" "$work/put.lua")
line "stowage PUT" "$sp" "$(rss_mib "$spid")"
python3 - "$ng" "$sg" "$bg" <<'PY'
import sys
n, s, b = (float(x.split()[0]) for x in sys.argv[1:4])
print(f"stowage GET / nginx GET: {s / n:.2f}x (goal >= 0.5x); without policies: {b / n:.2f}x")
PY

echo "== /healthz while two 1 GiB PUTs commit"
for i in 1 2; do
    curl -sS -o /dev/null -H "Authorization: Bearer $key" -T "$work/1g.bin" "http://127.0.0.1:$sport/v1/objects/default/load/big-$i.bin" &
    pids+=("$!")
done
sleep 1
hz=$(run "http://127.0.0.1:$sport" "$work/healthz.lua" 10 4)
line "/healthz during 2 x 1 GiB" "$hz" "$(rss_mib "$spid")"
wait "${pids[@]: -2}" 2>/dev/null || true
echo "   (goal: p99 < 50 ms)"
echo "== server log errors: $(grep -c ' ERROR ' "$work/stowage.log" || true); ledger verify: $(cd "$work" && "$stowage" ledger verify 2>&1 | tail -1)"
