#!/usr/bin/env bash
# The demo gateway behind `make run`: checks the ports, renders demo.yaml.tmpl, validates it,
# starts portcullis-admin, the demo services and Envoy, prints curl commands, and runs until
# Ctrl-C (SIGINT) or SIGTERM, which stop all of them alike. `make run` builds what it needs
# first.
#
# portcullis-admin (the control plane: Kong's Admin API) runs on a SQLite file in DEMO_RUN_DIR,
# made afresh at every start; its Admin API on DEMO_ADMIN_API_PORT (8001, Kong's), its data
# plane on DEMO_DATA_PLANE_PORT (8005), both on loopback without tokens. Every gateway node's
# config has the cluster portcullis_admin at the data plane.
#
# HTTPS by default (DEMO_TLS=1; `make run TLS=0` for plain HTTP): the seed's best practice,
# so the demo shows it. At every start `portcullis-services certs` writes a new demo CA and
# certificates into DEMO_RUN_DIR/tls (the CA's key is kept nowhere); Envoy's listener serves
# HTTPS, Envoy speaks TLS to every service, to portcullis-admin's data plane and to the rate
# limit service, checking each one's certificate against that CA and its name; the Admin API
# serves HTTPS too. The printed curl commands trust the CA with --cacert.
#
# DEMO_CHAIN (`make run CHAIN=…`): `gateway` (the default) runs the four stages in one VM,
# dist/portcullis-gateway.wasm: one VM per worker instead of four, less memory and time per
# request, the same answers (filters/gateway/tests/differential.rs); `filters` runs the four
# separate filters, each in its own VM, as a team adopting them one by one would.
#
# DEMO_NODES=2 (`make run NODES=2`) runs two gateway nodes sharing one rate limit: Redis (no
# persistence, its files in a temporary directory under DEMO_RUN_DIR), the rate limit service
# portcullis-ratelimit against it, and two Envoys with the same chain, their rate-limiting
# policy policies/rate-limiting-redis.json (policy redis); Ctrl-C stops all of them.
#
# Environment: DEMO_PORT (8080), DEMO_ADMIN_PORT (9901), DEMO_USERS_PORT (18081),
# DEMO_ORDERS_PORT (18082), DEMO_PAYMENTS_PORT (18083), DEMO_LOGIN_PORT (18084),
# DEMO_ADMIN_API_PORT (8001), DEMO_DATA_PLANE_PORT (8005); with DEMO_NODES=2 also
# DEMO_NODE2_PORT (8090), DEMO_NODE2_ADMIN_PORT (9902), DEMO_REDIS_PORT (16379),
# DEMO_RATELIMIT_PORT (18085); DEMO_TLS (1: HTTPS, 0: plain HTTP); ENVOY, SERVICES and
# ADMIN_SERVICE (portcullis-admin), the binaries (the Makefile sets all three), and for
# DEMO_NODES=2 REDIS (redis-server) and RATELIMIT (portcullis-ratelimit); DEMO_RUN_DIR (.run),
# where the rendered configs, the admin's database, the demo certificates (tls/), each node's
# JSON access log (access.log, access-node2.log) and the logs of validation, the admin and
# Redis go.
set -euo pipefail
cd "$(dirname "$0")/.."

ENVOY=${ENVOY:-.venv/bin/envoy}
SERVICES=${SERVICES:-target/debug/portcullis-services}
ADMIN_SERVICE=${ADMIN_SERVICE:-target/debug/portcullis-admin}
REDIS=${REDIS:-redis-server}
RATELIMIT=${RATELIMIT:-target/debug/portcullis-ratelimit}
HOST=127.0.0.1
RUN_DIR=${DEMO_RUN_DIR:-.run}
NODES=${DEMO_NODES:-1}
TLS=${DEMO_TLS:-1}
CHAIN=${DEMO_CHAIN:-gateway}
# Absolute from here on: Redis changes into its --dir before it opens --logfile, so a relative
# path (the default .run) would be resolved twice and not exist.
mkdir -p "$RUN_DIR"
RUN_DIR=$(cd "$RUN_DIR" && pwd)

# name, variable, port: every port the demo listens on.
PORTS=(
  "gateway DEMO_PORT ${DEMO_PORT:-8080}"
  "admin DEMO_ADMIN_PORT ${DEMO_ADMIN_PORT:-9901}"
  "user-service DEMO_USERS_PORT ${DEMO_USERS_PORT:-18081}"
  "order-service DEMO_ORDERS_PORT ${DEMO_ORDERS_PORT:-18082}"
  "payment-service DEMO_PAYMENTS_PORT ${DEMO_PAYMENTS_PORT:-18083}"
  "login-service DEMO_LOGIN_PORT ${DEMO_LOGIN_PORT:-18084}"
  "admin-api DEMO_ADMIN_API_PORT ${DEMO_ADMIN_API_PORT:-8001}"
  "data-plane DEMO_DATA_PLANE_PORT ${DEMO_DATA_PLANE_PORT:-8005}"
)
say() { echo "make run: $*"; }
fail() { echo "make run: $*" >&2; exit 1; }

[[ -x $ADMIN_SERVICE ]] || fail "no $ADMIN_SERVICE (ADMIN_SERVICE): run \`make build\`"
case $NODES in
  1) ;;
  2)
    PORTS+=(
      "gateway-2 DEMO_NODE2_PORT ${DEMO_NODE2_PORT:-8090}"
      "admin-2 DEMO_NODE2_ADMIN_PORT ${DEMO_NODE2_ADMIN_PORT:-9902}"
      "redis DEMO_REDIS_PORT ${DEMO_REDIS_PORT:-16379}"
      "ratelimit DEMO_RATELIMIT_PORT ${DEMO_RATELIMIT_PORT:-18085}"
      "ratelimit-metrics DEMO_RATELIMIT_METRICS_PORT ${DEMO_RATELIMIT_METRICS_PORT:-18086}"
    )
    command -v "$REDIS" >/dev/null || fail "no $REDIS (REDIS): \`make setup\` installs redis-server"
    [[ -x $RATELIMIT ]] || fail "no $RATELIMIT (RATELIMIT): run \`make build\`"
    ;;
  *) fail "DEMO_NODES=$NODES (make run NODES=…): the demo runs 1 or 2 gateway nodes" ;;
esac
[[ $TLS == 0 || $TLS == 1 ]] ||
  fail "DEMO_TLS=$TLS (make run TLS=…): 1 for HTTPS (the default) or 0 for plain HTTP"
[[ $CHAIN == gateway || $CHAIN == filters ]] ||
  fail "DEMO_CHAIN=$CHAIN (make run CHAIN=…): gateway (the default: one VM for the four stages) or filters (one VM each)"

# A port is taken if something accepts a connection on it.
in_use() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

declare -A PORT VARIABLE
taken=0
for entry in "${PORTS[@]}"; do
  read -r name variable port <<<"$entry"
  if ! [[ $port =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then
    fail "$variable=$port is not a port number"
  fi
  for other in "${!PORT[@]}"; do
    [[ ${PORT[$other]} != "$port" ]] ||
      fail "$name ($variable) and $other (${VARIABLE[$other]}) both want port $port: change one"
  done
  PORT[$name]=$port
  VARIABLE[$name]=$variable
  if in_use "$port"; then
    echo "make run: port $port ($name) is already in use on $HOST: stop what holds it" \
      "(ss -ltnp 'sport = :$port') or set $variable to a free port" >&2
    taken=1
  fi
done
((taken == 0)) || exit 1

ADDRESSES=(
  --users "$HOST:${PORT[user-service]}" --orders "$HOST:${PORT[order-service]}"
  --payments "$HOST:${PORT[payment-service]}" --login "$HOST:${PORT[login-service]}"
)
# One gateway node per entry: its listener and admin port names in PORT, its config.
GATEWAYS=(gateway)
ADMINS=(admin)
CONFIGS=("$RUN_DIR/demo.yaml")
# Each node's JSON access log (envoy-config/access-log/, docs/access-log.md).
ACCESS_LOGS=("$RUN_DIR/access.log")
RENDER_FLAGS=(--chain "$CHAIN")
# The TLS flags of each service: its certificate and key from the demo's, or none.
SERVICES_TLS=()
ADMIN_TLS=()
RATELIMIT_TLS=()
CA=""
if ((TLS)); then
  TLS_DIR=$RUN_DIR/tls
  "$SERVICES" certs --dir "$TLS_DIR" >/dev/null ||
    fail "could not write the demo certificates into $TLS_DIR"
  RENDER_FLAGS+=(--tls-dir "$TLS_DIR")
  tls_flags() { printf '%s\n' --tls-cert "$TLS_DIR/$1.pem" --tls-key "$TLS_DIR/$1.key"; }
  mapfile -t SERVICES_TLS < <(tls_flags services)
  mapfile -t ADMIN_TLS < <(tls_flags portcullis-admin)
  mapfile -t RATELIMIT_TLS < <(tls_flags ratelimit)
  # What the printed curl commands trust: relative to the checkout, where `make run` runs,
  # when the run directory is inside it.
  CA=$TLS_DIR/ca.pem
  [[ $CA != "$PWD"/* ]] || CA=${CA#"$PWD"/}
  say "new demo CA and certificates in $TLS_DIR (clients trust $CA)"
fi
if ((NODES == 2)); then
  GATEWAYS+=(gateway-2)
  ADMINS+=(admin-2)
  CONFIGS+=("$RUN_DIR/demo-node2.yaml")
  ACCESS_LOGS+=("$RUN_DIR/access-node2.log")
  # policy redis: the rate limit service's cluster, and policies/rate-limiting-redis.json.
  RENDER_FLAGS+=(--ratelimit "$HOST:${PORT[ratelimit]}")
fi
# The release, for the log: `make run ENVOY_VERSION=1.36` runs another than the default.
envoy_release=$("$ENVOY" --version 2>&1 | sed -n 's|.*version: [^/]*/\([^/]*\)/.*|\1|p')
say "Envoy ${envoy_release:-(release unknown)}: $ENVOY"
if [[ $CHAIN == gateway ]]; then
  say "filters: the one-VM gateway (dist/portcullis-gateway.wasm; make run CHAIN=filters: four VMs)"
else
  say "filters: token-issuer, jwt, acl and rate-limiting, each in its own VM (CHAIN=filters)"
fi
for i in "${!CONFIGS[@]}"; do
  config=${CONFIGS[i]}
  "$SERVICES" render --template envoy-config/demo.yaml.tmpl --policies envoy-config/policies \
    --dist dist --gateway "$HOST:${PORT[${GATEWAYS[i]}]}" --admin "$HOST:${PORT[${ADMINS[i]}]}" \
    --portcullis-admin "$HOST:${PORT[data-plane]}" --access-log "${ACCESS_LOGS[i]}" \
    "${ADDRESSES[@]}" "${RENDER_FLAGS[@]}" >"$config"
  "$ENVOY" --mode validate -c "$config" --log-level warn >"$RUN_DIR/validate.log" 2>&1 || {
    cat "$RUN_DIR/validate.log" >&2
    fail "Envoy refused $config (rendered from envoy-config/demo.yaml.tmpl)"
  }
  say "$config is valid"
done

services_pid=""
admin_pid=""
envoy_pids=()
redis_pid=""
redis_dir=""
ratelimit_pid=""
# Stops whatever was started, on every way out: Ctrl-C, SIGTERM, an error, Envoy exiting.
stop() {
  local status=$?
  trap - EXIT INT TERM
  # shellcheck disable=SC2206 # unquoted on purpose: a pid not yet set is no word at all
  local pids=(${envoy_pids[@]} $ratelimit_pid $redis_pid $services_pid $admin_pid)
  if ((${#pids[@]})); then
    kill -TERM "${pids[@]}" 2>/dev/null || true
    # Up to 10 s for all of them to exit, then SIGKILL whatever is left.
    for _ in $(seq 100); do
      alive=0
      for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
      ((alive)) || break
      sleep 0.1
    done
    kill -KILL "${pids[@]}" 2>/dev/null || true
    wait "${pids[@]}" 2>/dev/null || true
    if ((NODES == 1)); then
      say "stopped Envoy, portcullis-admin and the services"
    else
      say "stopped both Envoys, portcullis-admin, the rate limit service, Redis and the services"
    fi
  fi
  [[ -z $redis_dir ]] || rm -rf "$redis_dir"
  exit "$status"
}
trap stop EXIT
# Ctrl-C and SIGTERM are how the demo is meant to end: a clean stop, status 0 (make would
# otherwise report the run as a failed recipe).
trap 'exit 0' INT TERM

# Waits up to 5 s for a command to succeed while the process `pid` runs.
await() { # pid what command…
  local pid=$1 what=$2
  shift 2
  for _ in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || fail "$what did not start (see above)"
    "$@" && return 0
    sleep 0.1
  done
  fail "$what was not ready within 5 s"
}
# Redis answers PING with +PONG.
redis_ready() {
  (
    exec 3<>"/dev/tcp/$HOST/${PORT[redis]}" || exit 1
    printf 'PING\r\n' >&3
    read -r -t 1 reply <&3 && [[ $reply == +PONG* ]]
  ) 2>/dev/null
}

if ((NODES == 2)); then
  # Nothing is saved: no RDB snapshot, no append-only file; the directory goes on exit.
  redis_dir=$(mktemp -d "$RUN_DIR/redis.XXXXXX")
  "$REDIS" --port "${PORT[redis]}" --bind "$HOST" --dir "$redis_dir" --save "" \
    --appendonly no --daemonize no --logfile "$RUN_DIR/redis.log" &
  redis_pid=$!
  await "$redis_pid" "Redis (log: $RUN_DIR/redis.log)" redis_ready
  say "Redis is up on $HOST:${PORT[redis]} (data in $redis_dir, not saved; log: $RUN_DIR/redis.log)"
  "$RATELIMIT" --listen "$HOST:${PORT[ratelimit]}" --redis-url "redis://$HOST:${PORT[redis]}/0" \
    --metrics-listen "$HOST:${PORT[ratelimit-metrics]}" "${RATELIMIT_TLS[@]}" &
  ratelimit_pid=$!
  await "$ratelimit_pid" "the rate limit service" in_use "${PORT[ratelimit]}"
fi

# A fresh database each run, as Redis starts empty: what the Admin API made last time is gone.
rm -f "$RUN_DIR/admin.db" "$RUN_DIR/admin.db-wal" "$RUN_DIR/admin.db-shm"
# Tokens or a database from the developer's shell would change what the printed commands meet.
env -u PORTCULLIS_ADMIN_TOKEN -u PORTCULLIS_ADMIN_DATA_PLANE_TOKEN -u PORTCULLIS_ADMIN_DB \
  "$ADMIN_SERVICE" --db "sqlite:$RUN_DIR/admin.db" --listen "$HOST:${PORT[admin-api]}" \
  --data-plane-listen "$HOST:${PORT[data-plane]}" "${ADMIN_TLS[@]}" >/dev/null 2>"$RUN_DIR/admin.log" &
admin_pid=$!
await "$admin_pid" "portcullis-admin (log: $RUN_DIR/admin.log)" in_use "${PORT[data-plane]}"
# http or https, and curl's flag to trust the demo CA.
if ((TLS)); then
  scheme=https
  curl_ca=" --cacert $CA"
else
  scheme=http
  curl_ca=""
fi
admin_api="$scheme://$HOST:${PORT[admin-api]}"
say "portcullis-admin is up: Admin API $admin_api, data plane" \
  "$HOST:${PORT[data-plane]} (database $RUN_DIR/admin.db, log $RUN_DIR/admin.log)"

"$SERVICES" "${ADDRESSES[@]}" "${SERVICES_TLS[@]}" &
services_pid=$!
for _ in $(seq 50); do
  kill -0 "$services_pid" 2>/dev/null || fail "the demo services did not start (see above)"
  in_use "${PORT[login-service]}" && break
  sleep 0.1
done
in_use "${PORT[login-service]}" || fail "the demo services were not listening within 5 s"

# Envoy runs as a background job only so this script can wait for it and still act on a
# signal at once; its log comes to this terminal. The access log is flushed line by line.
# Hot restart off: no shared memory or domain socket, so two Envoys need no --base-id.
QUIET=main:warning,config:warning,runtime:warning,upstream:warning
ENVOY_FLAGS=(
  --concurrency 2 --disable-hot-restart --log-level info --component-log-level "$QUIET"
)
# Envoy 1.36 has no --file-flush-min-size-kb (new in 1.37): there the access log is flushed
# every 20 ms instead.
envoy_help=$("$ENVOY" --help 2>&1 || true)
if [[ $envoy_help == *--file-flush-min-size-kb* ]]; then
  ENVOY_FLAGS+=(--file-flush-min-size-kb 0)
else
  ENVOY_FLAGS+=(--file-flush-interval-msec 20)
fi
if ((NODES == 1)); then
  "$ENVOY" -c "${CONFIGS[0]}" "${ENVOY_FLAGS[@]}" &
  envoy_pids+=($!)
else
  # Each node's lines start with its name, so the two logs can be told apart.
  for i in "${!CONFIGS[@]}"; do
    "$ENVOY" -c "${CONFIGS[i]}" "${ENVOY_FLAGS[@]}" > >(sed -u "s/^/[node $((i + 1))] /") 2>&1 &
    envoy_pids+=($!)
  done
fi

ready() { # admin port
  (
    exec 3<>"/dev/tcp/$HOST/$1" || exit 1
    printf 'GET /ready HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$HOST" >&3
    grep -q '^LIVE' <&3
  ) 2>/dev/null
}
all_ready() {
  local admin
  for admin in "${ADMINS[@]}"; do ready "${PORT[$admin]}" || return 1; done
}
for _ in $(seq 300); do
  for pid in "${envoy_pids[@]}"; do
    kill -0 "$pid" 2>/dev/null || fail "Envoy exited during start-up (see its log above)"
  done
  all_ready && break
  sleep 0.1
done
all_ready || fail "Envoy was not ready within 30 s"

gw="$scheme://$HOST:${PORT[gateway]}"
curl="curl$curl_ca"
if ((TLS)); then
  upstreams="every service and portcullis-admin"
  ((NODES == 1)) || upstreams="every service, portcullis-admin and the rate limit service"
  transport="HTTPS (TLS=0 for plain HTTP): clients -> Envoy, Envoy -> $upstreams,
  each certificate checked against the demo CA $CA"
else
  transport="plain HTTP (TLS=0); \`make run\` without it serves HTTPS"
fi

# Demo tokens for the two consumers of envoy-config/policies/jwt.json, valid for an hour:
# HS256 signed with the consumer's demo secret (what a Kong jwt credential holds).
b64url() { openssl base64 -A | tr '+/' '-_' | tr -d '='; }
demo_token() { # consumer
  local secret now header payload sig
  # The credential's "secret", within the same object as its "key" (jwt.json spreads them
  # over several lines, so join them first).
  secret=$(tr -d '\n' <envoy-config/policies/jwt.json |
    sed -n "s/.*\"key\": *\"$1\"[^}]*\"secret\": *\"\([^\"]*\)\".*/\1/p")
  [[ -n $secret ]] || fail "no HS256 secret for the credential \"$1\" in envoy-config/policies/jwt.json"
  now=$(date +%s)
  header=$(printf '{"alg":"HS256","typ":"JWT"}' | b64url)
  payload=$(printf '{"iss":"%s","sub":"%s","iat":%d,"exp":%d}' "$1" "$1" "$now" $((now + 3600)) | b64url)
  sig=$(printf '%s.%s' "$header" "$payload" | openssl dgst -sha256 -hmac "$secret" -binary | b64url)
  printf '%s.%s.%s' "$header" "$payload" "$sig"
}
MOBILE=$(demo_token mobile-app)
WEB=$(demo_token web-app)

if ((NODES == 1)); then
  headline="the demo gateway is up on $gw (Envoy admin: http://$HOST:${PORT[admin]})
  filters: token-issuer -> jwt -> acl -> rate-limiting (policies: envoy-config/policies/*.json)"
  limit="Payments beyond 20 in a minute are refused (429, with X-RateLimit-* and RateLimit-* headers):
    for i in \$(seq 21); do $curl -s -o /dev/null -w '%{http_code} ' $gw/payments -H \"authorization: Bearer \$MOBILE\"; done; echo"
  stops="Envoy, portcullis-admin and the services"
else
  gw2="$scheme://$HOST:${PORT[gateway-2]}"
  headline="two gateway nodes share one rate limit: $gw and $gw2
  (Envoy admin: http://$HOST:${PORT[admin]} and http://$HOST:${PORT[admin-2]})
  filters on both: token-issuer -> jwt -> acl -> rate-limiting (policies: envoy-config/policies/*.json,
  rate-limiting-redis.json for rate-limiting: policy redis, counted by portcullis-ratelimit on
  $HOST:${PORT[ratelimit]} in Redis on $HOST:${PORT[redis]})"
  limit="Payments beyond 20 in a minute are refused whichever node gets them: 22 payments alternating
  between the nodes get twenty 200s, then 429 (with X-RateLimit-* and RateLimit-* headers):
    for i in \$(seq 11); do for node in $gw $gw2; do $curl -s -o /dev/null -w '%{http_code} ' \$node/payments -H \"authorization: Bearer \$MOBILE\"; done; done; echo
  The counters, in Redis:
    redis-cli -p ${PORT[redis]} --scan
  The rate limit service's metrics and readiness:
    curl -s http://$HOST:${PORT[ratelimit-metrics]}/metrics | grep '^portcullis_ratelimit_requests_total'
    curl -s http://$HOST:${PORT[ratelimit-metrics]}/readyz"
  stops="both Envoys, portcullis-admin, the rate limit service, Redis and the services"
fi

cat <<EOF

make run: $headline
  scenario: payments for admins only; 100 requests a minute per consumer, 20 on payments
  $transport

  Without a token: 401 {"message":"Unauthorized"}
    $curl -i $gw/users
  As mobile-app (group admins) and web-app (group customers), tokens valid for an hour:
    MOBILE=$MOBILE
    WEB=$WEB
    $curl -i $gw/users -H "authorization: Bearer \$MOBILE"
    $curl -i $gw/orders -H "authorization: Bearer \$WEB"
    $curl -i $gw/payments -H "authorization: Bearer \$MOBILE"
    $curl -i $gw/payments -H "authorization: Bearer \$WEB"
  $limit
  Log in (demo users in services/fixtures/users.json); a good login answers a token signed by
  the token-issuer filter, usable as above (mobile-app may pay, web-app may not):
    $curl -i $gw/login -H 'content-type: application/json' -d '{"username":"mobile-app","password":"mobile-demo"}'
    $curl -i $gw/login -H 'content-type: application/json' -d '{"username":"web-app","password":"web-demo"}'
    $curl -i $gw/login -H 'content-type: application/json' -d '{"username":"web-app","password":"wrong"}'

  portcullis-admin: Kong's Admin API on $admin_api (consumers, JWT credentials,
  groups, revocations; empty at every start); its data plane, $HOST:${PORT[data-plane]}, is the
  cluster portcullis_admin of every node. docs/demo.md walks a consumer through it:
    $curl -s $admin_api/status
    $curl -i -X POST $admin_api/consumers --data username=alice

  Each request's decisions (one JSON object a line; docs/access-log.md):
    tail -f ${ACCESS_LOGS[*]}

  Ctrl-C stops $stops.

EOF

wait -n "${envoy_pids[@]}" || fail "Envoy exited (status $?)"
say "Envoy exited"
