#!/usr/bin/env bash
# The project's one test command (README "Test"; .ci/run calls exactly this).
# Runs gofmt, go vet, staticcheck, `npm ci` for the e2e Bolt app and admin
# page driver (installing chromium with apt-get when missing), and
# `go test -race ./...` against a real Redis: $REDIS_URL if set, else a
# private redis-server on a random free port that is stopped afterwards
# (never the machine's 6379). When it can (root, unshare and ip present;
# SEALRELAY_TEST_NETNS=0 turns it off) the tests run inside a network
# namespace of their own where nothing listens on 6379, which proves that
# every test package finds Redis only through $REDIS_URL
# (internal/testredis). A missing Redis fails the run; nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

STATICCHECK_VERSION=v0.8.2 # staticcheck 2026.2.2
export PATH="$(go env GOPATH)/bin:$PATH"

step() { printf '\n==> %s\n' "$*"; }

ensure_redis_server() {
  command -v redis-server >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    step "installing redis-server with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
    command -v redis-server >/dev/null 2>&1 && return 0
  fi
  echo "error: redis-server is not installed and could not be installed automatically." >&2
  echo "       install it and re-run:  sudo apt-get install -y redis-server   (macOS: brew install redis)" >&2
  exit 1
}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

private_redis_dir=""
cleanup() {
  if [ -n "$private_redis_dir" ]; then
    redis-cli -p "$private_redis_port" shutdown nosave >/dev/null 2>&1 || kill "$(cat "$private_redis_dir/redis.pid" 2>/dev/null)" 2>/dev/null || true
    rm -rf "$private_redis_dir"
  fi
}
trap cleanup EXIT

# run_tests starts a private redis-server unless $REDIS_URL is set and runs
# the Go test suite against it.
run_tests() {
  step "redis"
  # Tests that kill and restart Redis start their own redis-server, so the
  # binary is required even when a server is already running.
  ensure_redis_server
  if [ -z "${REDIS_URL:-}" ]; then
    # Always a private server on a random port: the suite must not depend on
    # (or disturb) whatever runs on 6379, and proves it finds Redis only
    # through $REDIS_URL.
    private_redis_dir=$(mktemp -d)
    for _ in $(seq 1 50); do
      private_redis_port=$((20000 + RANDOM % 20000))
      port_open 127.0.0.1 "$private_redis_port" || break
    done
    redis-server --port "$private_redis_port" --bind 127.0.0.1 --save '' --appendonly no \
      --dir "$private_redis_dir" --daemonize yes --pidfile "$private_redis_dir/redis.pid" \
      --logfile "$private_redis_dir/redis.log"
    for _ in $(seq 1 100); do port_open 127.0.0.1 "$private_redis_port" && break; sleep 0.05; done
    port_open 127.0.0.1 "$private_redis_port" || { echo "error: private redis-server did not start:" >&2; cat "$private_redis_dir/redis.log" >&2; exit 1; }
    export REDIS_URL="redis://127.0.0.1:$private_redis_port/0"
  fi
  echo "using $REDIS_URL"

  step "go test -race ./..."
  go test -race -count=1 ./...
}

if [ "${1:-}" = "--tests-in-netns" ]; then
  ip link set lo up
  if (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
    echo "error: something listens on 127.0.0.1:6379 inside the test network namespace" >&2
    exit 1
  fi
  run_tests
  exit 0
fi

step "gofmt"
unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
  echo "gofmt would change:" >&2
  echo "$unformatted" >&2
  exit 1
fi

step "go vet"
go vet ./...

step "staticcheck $STATICCHECK_VERSION"
if ! staticcheck -version 2>/dev/null | grep -q "(${STATICCHECK_VERSION#v})"; then
  go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION"
fi
staticcheck ./...

step "npm ci (e2e/apps/bolt)"
# The end-to-end suite runs a real Bolt for JavaScript app (e2e/apps_test.go);
# its dependencies are pinned by e2e/apps/bolt/package-lock.json.
if { ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; } &&
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  step "installing nodejs and npm with apt-get"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "error: node and npm are required for the Bolt app in e2e/apps/bolt (Node.js 18 or later)." >&2
  echo "       install them and re-run:  sudo apt-get install -y nodejs npm   (macOS: brew install node)" >&2
  exit 1
fi
echo "node $(node --version), npm $(npm --version)"
(cd e2e/apps/bolt && npm ci --no-audit --no-fund --loglevel=error)

step "chromium and npm ci (e2e/apps/admin)"
# The admin page test (e2e/admin_page_test.go) drives Debian's headless
# chromium with playwright-core, pinned by e2e/apps/admin/package-lock.json.
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  step "installing chromium with apt-get"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
if [ ! -x /usr/bin/chromium ]; then
  echo "error: /usr/bin/chromium is required for the admin page test (e2e/admin_page_test.go)." >&2
  echo "       install it and re-run:  sudo apt-get install -y chromium" >&2
  exit 1
fi
/usr/bin/chromium --version 2>/dev/null || true
(cd e2e/apps/admin && npm ci --no-audit --no-fund --loglevel=error)

ensure_redis_server
if [ -z "${REDIS_URL:-}" ] && [ "${SEALRELAY_TEST_NETNS:-1}" != 0 ] &&
  command -v unshare >/dev/null 2>&1 && command -v ip >/dev/null 2>&1 && unshare -n true 2>/dev/null; then
  # The proof that the suite needs nothing on 6379: run it in a network
  # namespace of its own, where only loopback exists and nothing but the
  # private redis-server (and what the tests start) listens. Everything
  # the tests need was downloaded above.
  step "entering a private network namespace (loopback only; nothing listens on 6379)"
  unshare -n "$0" --tests-in-netns
else
  run_tests
fi
