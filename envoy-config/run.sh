#!/usr/bin/env bash
# The demo gateway behind `make run`: checks the ports, renders demo.yaml.tmpl, validates it,
# starts the demo services and Envoy, prints curl commands, and runs until Ctrl-C (SIGINT) or
# SIGTERM, which stop Envoy and the services alike. `make run` builds what it needs first.
#
# Environment: DEMO_PORT (8080), DEMO_ADMIN_PORT (9901), DEMO_USERS_PORT (18081),
# DEMO_ORDERS_PORT (18082), DEMO_PAYMENTS_PORT (18083), DEMO_LOGIN_PORT (18084);
# ENVOY and SERVICES, the two binaries (the Makefile sets both); DEMO_RUN_DIR (.run), where the
# rendered config and the validation log go.
set -euo pipefail
cd "$(dirname "$0")/.."

ENVOY=${ENVOY:-.venv/bin/envoy}
SERVICES=${SERVICES:-target/debug/portcullis-services}
HOST=127.0.0.1
RUN_DIR=${DEMO_RUN_DIR:-.run}
CONFIG=$RUN_DIR/demo.yaml

# name, variable, port: every port the demo listens on.
PORTS=(
  "gateway DEMO_PORT ${DEMO_PORT:-8080}"
  "admin DEMO_ADMIN_PORT ${DEMO_ADMIN_PORT:-9901}"
  "user-service DEMO_USERS_PORT ${DEMO_USERS_PORT:-18081}"
  "order-service DEMO_ORDERS_PORT ${DEMO_ORDERS_PORT:-18082}"
  "payment-service DEMO_PAYMENTS_PORT ${DEMO_PAYMENTS_PORT:-18083}"
  "login-service DEMO_LOGIN_PORT ${DEMO_LOGIN_PORT:-18084}"
)
say() { echo "make run: $*"; }
fail() { echo "make run: $*" >&2; exit 1; }

# A port is taken if something accepts a connection on it.
in_use() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

declare -A PORT VARIABLE
taken=0
for entry in "${PORTS[@]}"; do
  read -r name variable port <<<"$entry"
  [[ $port =~ ^[0-9]+$ ]] && ((port > 0 && port < 65536)) ||
    fail "$variable=$port is not a port number"
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
mkdir -p "$RUN_DIR"
"$SERVICES" render --template envoy-config/demo.yaml.tmpl --policies envoy-config/policies \
  --dist dist --gateway "$HOST:${PORT[gateway]}" --admin "$HOST:${PORT[admin]}" \
  "${ADDRESSES[@]}" >"$CONFIG"
"$ENVOY" --mode validate -c "$CONFIG" --log-level warn >"$RUN_DIR/validate.log" 2>&1 || {
  cat "$RUN_DIR/validate.log" >&2
  fail "Envoy refused $CONFIG (rendered from envoy-config/demo.yaml.tmpl)"
}
say "$CONFIG is valid"

services_pid=""
envoy_pid=""
# Stops whatever was started, on every way out: Ctrl-C, SIGTERM, an error, Envoy exiting.
stop() {
  local status=$?
  trap - EXIT INT TERM
  local pids=($envoy_pid $services_pid)
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
    say "stopped Envoy and the services"
  fi
  exit "$status"
}
trap stop EXIT
# Ctrl-C and SIGTERM are how the demo is meant to end: a clean stop, status 0 (make would
# otherwise report the run as a failed recipe).
trap 'exit 0' INT TERM

"$SERVICES" "${ADDRESSES[@]}" &
services_pid=$!
for _ in $(seq 50); do
  kill -0 "$services_pid" 2>/dev/null || fail "the demo services did not start (see above)"
  in_use "${PORT[login-service]}" && break
  sleep 0.1
done
in_use "${PORT[login-service]}" || fail "the demo services were not listening within 5 s"

# Envoy runs as a background job only so this script can wait for it and still act on a
# signal at once; its log comes to this terminal. The access log is flushed line by line.
"$ENVOY" -c "$CONFIG" --concurrency 2 --disable-hot-restart \
  --log-level info --component-log-level main:warning,config:warning,runtime:warning,upstream:warning \
  --file-flush-min-size-kb 0 &
envoy_pid=$!

ready() {
  (
    exec 3<>"/dev/tcp/$HOST/${PORT[admin]}" || exit 1
    printf 'GET /ready HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$HOST" >&3
    grep -q '^LIVE' <&3
  ) 2>/dev/null
}
for _ in $(seq 300); do
  kill -0 "$envoy_pid" 2>/dev/null || fail "Envoy exited during start-up (see its log above)"
  ready && break
  sleep 0.1
done
ready || fail "Envoy was not ready within 30 s"

gw="http://$HOST:${PORT[gateway]}"

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

cat <<EOF

make run: the demo gateway is up on $gw (Envoy admin: http://$HOST:${PORT[admin]})
  filters: token-issuer -> jwt -> acl -> rate-limiting (policies: envoy-config/policies/*.json)
  scenario: payments for admins only; 100 requests a minute per consumer, 20 on payments

  Without a token: 401 {"message":"Unauthorized"}
    curl -i $gw/users
  As mobile-app (group admins) and web-app (group customers), tokens valid for an hour:
    MOBILE=$MOBILE
    WEB=$WEB
    curl -i $gw/users -H "authorization: Bearer \$MOBILE"
    curl -i $gw/orders -H "authorization: Bearer \$WEB"
    curl -i $gw/payments -H "authorization: Bearer \$MOBILE"
    curl -i $gw/payments -H "authorization: Bearer \$WEB"
  Payments beyond 20 in a minute are refused (429, with X-RateLimit-* and RateLimit-* headers):
    for i in \$(seq 21); do curl -s -o /dev/null -w '%{http_code} ' $gw/payments -H "authorization: Bearer \$MOBILE"; done; echo
  Log in (demo users in services/fixtures/users.json); a good login answers a token signed by
  the token-issuer filter, usable as above (mobile-app may pay, web-app may not):
    curl -i $gw/login -H 'content-type: application/json' -d '{"username":"mobile-app","password":"mobile-demo"}'
    curl -i $gw/login -H 'content-type: application/json' -d '{"username":"web-app","password":"web-demo"}'
    curl -i $gw/login -H 'content-type: application/json' -d '{"username":"web-app","password":"wrong"}'

  Ctrl-C stops Envoy and the services.

EOF

wait "$envoy_pid" || fail "Envoy exited (status $?)"
say "Envoy exited"
