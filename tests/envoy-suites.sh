#!/usr/bin/env bash
# The real-Envoy suites, listed once. `make test-envoy` runs them all, `make test-envoy-smoke`
# the smoke set, against the Envoy in PORTCULLIS_ENVOY (the Makefile points it at the release
# ENVOY_VERSION names; docs/envoy-releases.md).
#
#   tests/envoy-suites.sh full     every test target that starts an Envoy, every test in it
#   tests/envoy-suites.sh smoke    the examples validated, one end-to-end per filter, the scenario
#   tests/envoy-suites.sh packaging  each filter's end-to-end suite and the demo's, in the
#                                  packaging they do not run by default: the filters' suites in
#                                  the one-VM gateway, the demo's as four separate filters
#   tests/envoy-suites.sh check    the lists against the tree: every test file that starts an
#                                  Envoy is in FULL, every SMOKE target is in FULL (both modes
#                                  above check first)
#   tests/envoy-suites.sh list     FULL, one "package test-target" a line
#
# Each target is its own `cargo test`; a failure does not stop the others. The end is a table
# of passed / failed per target and one total line; the status is 1 if any test failed.
set -euo pipefail
cd "$(dirname "$0")/.."

# "package test-target": every test target that runs a real Envoy, directly (Envoy::builder,
# Envoy::validate), through `make run` (MakeRun) or through the demo gateway's helpers.
FULL=(
  "portcullis-tests access_log_e2e"
  "portcullis-tests acl_e2e"
  "portcullis-tests conformance"
  "portcullis-tests conformance_foreign"
  "portcullis-tests conformance_grpc"
  "portcullis-tests conformance_stream"
  "portcullis-tests consumer_source_e2e"
  "portcullis-tests dashboard"
  "portcullis-tests envoy_smoke"
  "portcullis-tests examples"
  "portcullis-tests jwt_e2e"
  "portcullis-tests jwt_failure_delay_e2e"
  "portcullis-tests kong_import_e2e"
  "portcullis-tests rate_limiting_e2e"
  "portcullis-tests rate_limiting_redis_e2e"
  "portcullis-tests ratelimit_interop"
  "portcullis-tests token_issuer_e2e"
  "portcullis-services demo_gateway"
  "portcullis-services demo_tls"
  "portcullis-services demo_two_nodes"
  "portcullis-services scenario"
  "portcullis-cli kong_import"
  "portcullis-cli kong_import_admin"
)

# "package test-target [test …]": the smoke set, each test named exactly (none named: every
# test of the target). One end-to-end per filter: a token of each family through jwt (RS and
# ES checked by the host where it can), a customer refused payments by acl, exactly the limit
# across two workers then 429 from rate-limiting, a login signed by token-issuer and used.
SMOKE=(
  "portcullis-tests examples"
  "portcullis-tests jwt_e2e tokens_of_every_family_pass_with_kongs_headers_and_the_host_checks_rs_and_es"
  "portcullis-tests acl_e2e a_customer_token_is_refused_payments_and_the_upstream_never_sees_it"
  "portcullis-tests rate_limiting_e2e exactly_the_limit_gets_through_two_workers_then_kongs_429"
  "portcullis-tests token_issuer_e2e login_token_then_protected_route_with_keys_from_the_issuers_own_jwks"
  "portcullis-services scenario"
)

# "package test-target": the suites that run again in the other packaging
# (PORTCULLIS_PACKAGING). The filters' suites run as separate filters by default and here in
# the one-VM gateway (consecutive Portcullis filters merged into one, tests/src/config); the
# demo's run the gateway by default, as `make run` does, and here the four filters.
PACKAGING_GATEWAY=(
  "portcullis-tests access_log_e2e"
  "portcullis-tests acl_e2e"
  "portcullis-tests consumer_source_e2e"
  "portcullis-tests jwt_e2e"
  "portcullis-tests jwt_failure_delay_e2e"
  "portcullis-tests rate_limiting_e2e"
  "portcullis-tests rate_limiting_redis_e2e"
  "portcullis-tests token_issuer_e2e"
)
PACKAGING_FILTERS=(
  "portcullis-services demo_gateway"
  "portcullis-services demo_tls"
  "portcullis-services scenario"
)

# What in a test file means it starts an Envoy (the helpers that do it for a test included;
# the demo tests' Gateway::start, not their certificate helpers).
MARKERS='Envoy::|envoy_binary|MakeRun|Gateway::start|\.validate\(\)'

# The package of a crate directory, from its Cargo.toml.
package_of() {
  sed -n 's/^name *= *"\(.*\)"/\1/p' "$1/Cargo.toml" | head -n 1
}

# "package test-target" of every test file in the tree that carries a marker.
found_targets() {
  local file dir target
  git ls-files '*/tests/*.rs' '*/tests/*/main.rs' | while read -r file; do
    [[ $file == */common/* || $file == fuzz/* ]] && continue
    grep -qE "$MARKERS" "$file" || continue
    if [[ $file == */main.rs ]]; then
      target=$(basename "$(dirname "$file")")
      dir=${file%/tests/*}
    else
      target=$(basename "$file" .rs)
      dir=${file%/tests/*}
    fi
    echo "$(package_of "$dir") $target"
  done | sort -u
}

check() {
  local problems=0 entry listed
  listed=$(printf '%s\n' "${FULL[@]}" | sort -u)
  while read -r entry; do
    grep -qxF "$entry" <<<"$listed" || {
      echo "envoy-suites: $entry starts an Envoy but is not in FULL (tests/envoy-suites.sh)" >&2
      problems=1
    }
  done < <(found_targets)
  # Each target is run as `cargo test --workspace --test <target>`: its name must be its own.
  local names
  names=$(git ls-files '*/tests/*.rs' '*/tests/*/main.rs' | grep -v '/common/' |
    sed -E 's|/main\.rs$||; s|\.rs$||; s|.*/||')
  for entry in "${FULL[@]}"; do
    read -r package target <<<"$entry"
    (($(grep -cxF "$target" <<<"$names") == 1)) || {
      echo "envoy-suites: more than one package has a test target $target: rename one" >&2
      problems=1
    }
  done
  for entry in "${SMOKE[@]}" "${PACKAGING_GATEWAY[@]}" "${PACKAGING_FILTERS[@]}"; do
    read -r package target _ <<<"$entry"
    grep -qxF "$package $target" <<<"$listed" || {
      echo "envoy-suites: the target $package $target (SMOKE or PACKAGING_*) is not in FULL" >&2
      problems=1
    }
  done
  ((problems == 0))
}

# Runs each entry; prints the table and the total; status 1 if a test failed or an entry ran
# other than what it names.
run() {
  local entry package target names log passed failed total_passed=0 total_failed=0 bad=0
  local rows=()
  log=$(mktemp)
  trap 'rm -f "$log"' RETURN
  echo "envoy-suites: Envoy ${PORTCULLIS_ENVOY:-.venv/bin/envoy}: $("${PORTCULLIS_ENVOY:-.venv/bin/envoy}" --version 2>&1 | grep -o 'version: [^ ]*')"
  for entry in "$@"; do
    read -r package target names <<<"$entry"
    # --workspace, not -p: cargo resolves dependency features over what it builds, and only
    # the workspace-wide resolution is what `make test` built (with -p, CI would rebuild
    # much of the dependency tree for the smoke set). --test picks the one target by name.
    local args=(test --workspace --test "$target")
    # shellcheck disable=SC2206 # the names are words
    local wanted=($names)
    if ((${#wanted[@]})); then
      args+=(-- --exact "${wanted[@]}")
    fi
    echo "envoy-suites: cargo ${args[*]}"
    ${CARGO:-cargo} "${args[@]}" 2>&1 | tee "$log" || true
    passed=$(awk '/^test result:/ { for (i = 1; i < NF; i++) if ($(i+1) ~ /^passed/) p += $i } END { print p + 0 }' "$log")
    failed=$(awk '/^test result:/ { for (i = 1; i < NF; i++) if ($(i+1) ~ /^failed/) f += $i } END { print f + 0 }' "$log")
    if ! grep -q '^test result:' "$log"; then
      failed=$((failed + 1)) # it did not build or did not run: count it as one failure
    elif ((${#wanted[@]} && passed + failed != ${#wanted[@]})); then
      echo "envoy-suites: $target ran $((passed + failed)) tests, the list names ${#wanted[@]}" >&2
      failed=$((failed + ${#wanted[@]} - passed))
    elif ((passed + failed == 0)); then
      echo "envoy-suites: $target ran no test" >&2
      failed=1
    fi
    rows+=("$(printf '  %-20s %-26s %4d passed %4d failed' "$package" "$target" "$passed" "$failed")")
    total_passed=$((total_passed + passed))
    total_failed=$((total_failed + failed))
    ((failed == 0)) || bad=1
  done
  echo
  printf '%s\n' "${rows[@]}"
  echo "envoy-suites: $total_passed passed, $total_failed failed"
  ((bad == 0))
}

case ${1:-} in
  full) check && run "${FULL[@]}" ;;
  smoke) check && run "${SMOKE[@]}" ;;
  packaging)
    check
    status=0
    PORTCULLIS_PACKAGING=gateway run "${PACKAGING_GATEWAY[@]}" || status=1
    PORTCULLIS_PACKAGING=filters run "${PACKAGING_FILTERS[@]}" || status=1
    exit $status
    ;;
  check) check && echo "envoy-suites: the lists match the tree (${#FULL[@]} targets, ${#SMOKE[@]} smoke)" ;;
  list) printf '%s\n' "${FULL[@]}" ;;
  *)
    echo "usage: tests/envoy-suites.sh full|smoke|packaging|check|list" >&2
    exit 2
    ;;
esac
