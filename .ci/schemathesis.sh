#!/usr/bin/env bash
# Contract fuzzing of the HTTP API with schemathesis: it reads the server's own OpenAPI document
# (GET /api/openapi.json), generates requests for every operation, valid and invalid, and checks
# every answer with all of its checks: never a 5xx (not_a_server_error), a body that matches the
# schema documented for its status (response_schema_conformance), documented status codes, content
# types and headers, invalid input refused, auth not ignored, unsupported methods refused… All but
# positive_data_acceptance: a schema cannot say which plans, procedures or states the server
# accepts (an empty plan is well-formed and refused with 422, a WebSocket route answers a plain GET
# with 400), so schema-valid requests are often rightly refused.
# Each request carries the demo token of a role the operation accepts (the bearer scheme's scopes
# are the roles); public operations go without one.
#
# .ci/run runs it after `cargo test --workspace`, which builds target/debug/madoguchi. By hand:
#   bash .ci/schemathesis.sh [more schemathesis run options, e.g. --seed N or --include-path-regex kpi]
# It starts the server itself (free port, temporary data directory, config/demo.toml), waits for
# /readyz, seeds a few tickets so that numbers and phone tokens exist, runs, stops the server, and
# fails on any failed check, on a panic in the server's log, or when the server died.
#
# Knobs (environment): SCHEMATHESIS_MAX_EXAMPLES (per operation and phase, default 50),
# SCHEMATHESIS_TIMEOUT (seconds for the whole run, default 300), MADOGUCHI_BIN (the server binary),
# SCHEMATHESIS_VENV (where schemathesis is installed).
set -euo pipefail
cd "$(dirname "$0")/.."

version=4.32.5
max_examples=${SCHEMATHESIS_MAX_EXAMPLES:-50}
budget=${SCHEMATHESIS_TIMEOUT:-300}
bin=${MADOGUCHI_BIN:-target/debug/madoguchi}
venv=${SCHEMATHESIS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/madoguchi/schemathesis-$version}
started=$(date +%s)

# --- schemathesis, pinned, in its own virtual environment (reused while the version matches) ---
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -qF "$version"; then
  echo "installing schemathesis $version into $venv"
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' 2>/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-venv
  fi
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "schemathesis==$version"
fi
"$venv/bin/schemathesis" --version
py="$venv/bin/python"

# --- the server --------------------------------------------------------------------------------
if [ ! -x "$bin" ]; then
  cargo build -p madoguchi-server --bin madoguchi
fi
work=$(mktemp -d)
port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
"$bin" serve --config config/demo.toml --listen "127.0.0.1:$port" --data "$work/data" \
  >"$work/server.log" 2>&1 &
server=$!
stop_server() {
  if kill -0 "$server" 2>/dev/null; then
    kill -TERM "$server" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$server" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$server" 2>/dev/null || true
  fi
  wait "$server" 2>/dev/null || true
}
trap 'stop_server; rm -rf "$work"' EXIT

# The status of GET $1 (000 when the server does not answer).
status() {
  "$py" - "$1" <<'EOF'
import sys, urllib.request, urllib.error
urllib.request.install_opener(urllib.request.build_opener(urllib.request.ProxyHandler({})))
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=5).status)
except urllib.error.HTTPError as e:
    print(e.code)
except Exception:
    print("000")
EOF
}

for _ in $(seq 1 300); do
  [ "$(status "$base/readyz")" = 200 ] && break
  if ! kill -0 "$server" 2>/dev/null; then
    echo "madoguchi exited early:"; cat "$work/server.log"; exit 1
  fi
  sleep 0.1
done
if [ "$(status "$base/readyz")" != 200 ]; then
  echo "madoguchi did not become ready in 30 s:"; cat "$work/server.log"; exit 1
fi

doc=$(status "$base/api/openapi.json")
if [ "$doc" = 404 ] && [ -z "${CI:-}" ]; then
  echo "skipping schemathesis: the server serves no /api/openapi.json (404); under CI this fails"
  exit 0
fi
if [ "$doc" != 200 ]; then
  echo "GET /api/openapi.json answered $doc, not 200"; exit 1
fi

# --- data to reach past the 404s and 422s: the demo catalog's ids, today's numbers and phone tokens
# A few tickets: waiting, called, serving, done (a done ticket's token may rate the visit).
"$py" - "$base" "$work/schemathesis.toml" <<'EOF'
import json, sys, urllib.request

base, out = sys.argv[1], sys.argv[2]
urllib.request.install_opener(urllib.request.build_opener(urllib.request.ProxyHandler({})))

def call(method, path, token, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Authorization", "Bearer " + token)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as r:
        text = r.read()
        return json.loads(text) if text else None

numbers, tokens = [], []
plans = [
    {"life_event": "moving_in", "dispenser": "kiosk-1",
     "answers": {"children": True, "kokuho": False, "over_65": False, "over_75": False}},
    {"procedures": ["shoumei"]},
    {"procedures": ["tennyu"]},
    {"procedures": ["tenkyo"]},
    {"procedures": ["shoumei"], "lang": "en"},
    {"life_event": "certificates", "priority": True},
]
for plan in plans:
    t = call("POST", "/api/v1/sites/chuo/tickets", "demo-dispenser", plan)["ticket"]
    numbers.append(t["number"])
    tokens.append(t["token"])
for counter, actions in [("1", ["call-next"]), ("2", ["call-next", "start"]),
                         ("3", ["call-next", "start", "complete"])]:
    for action in actions:
        call("POST", f"/api/v1/sites/chuo/counters/{counter}/{action}", "demo-counter")

catalog = json.load(urllib.request.urlopen(base + "/api/v1/sites/chuo/catalog", timeout=10))

def values(xs):
    return "[" + ", ".join(json.dumps(x) for x in xs) + "]"

def ids(kind, key="id"):
    return values([x[key] for x in catalog[kind]])

with open(out, "w") as f:
    f.write(f"""# Written by .ci/schemathesis.sh for one run.
[generation]
database = "none"

[parameters]
"path.site" = {{ dictionary = "sites", probability = 0.8 }}
"path.counter" = {{ dictionary = "counters", probability = 0.8 }}
"path.number" = {{ dictionary = "numbers", probability = 0.8 }}
"path.token" = {{ dictionary = "tokens", probability = 0.8 }}
"path.agent" = {{ dictionary = "agents", probability = 0.8 }}
"body.procedures[*]" = {{ dictionary = "procedures", probability = 0.8 }}
"body.life_event" = {{ dictionary = "life_events", probability = 0.5 }}
"body.dispenser" = {{ dictionary = "dispensers", probability = 0.5 }}
"body.queues[*]" = {{ dictionary = "queues", probability = 0.8 }}
"body.number" = {{ dictionary = "numbers", probability = 0.8 }}

[dictionaries.sites]
values = ["chuo", "all"]

[dictionaries.counters]
values = {ids("counters")}

[dictionaries.procedures]
values = {ids("procedures", "code")}

[dictionaries.life_events]
values = {ids("life_events")}

[dictionaries.dispensers]
values = {ids("dispensers")}

[dictionaries.queues]
values = {ids("queues")}

[dictionaries.numbers]
values = {values(numbers)}

[dictionaries.tokens]
values = {values(tokens)}

[dictionaries.agents]
values = {values(sorted({d["printer_agent"] for d in catalog["dispensers"] if d.get("printer_agent")}))}
""")
print(f"seeded {len(numbers)} tickets: {', '.join(numbers)}")
EOF

# Each operation gets the demo token of one of the roles its security scopes name.
cat >"$work/madoguchi_hooks.py" <<'EOF'
import itertools

import schemathesis

TOKENS = {
    "dispenser": "demo-dispenser",
    "counter": "demo-counter",
    "floor": "demo-floor",
    "analyst": "demo-analyst",
    "printer": "demo-printer",
}


def roles(operation):
    security = operation.definition.raw.get("security")
    if security is None:
        security = operation.schema.raw_schema.get("security", [])
    return [role for requirement in security for scopes in requirement.values()
            for role in scopes if role in TOKENS]


# Turn by turn through the accepted roles (not `random`: Hypothesis wants to own the randomness).
turn = itertools.count()


@schemathesis.auth(refresh_interval=None)
class RoleToken:
    def get(self, case, context):
        accepted = roles(case.operation)
        return TOKENS[accepted[next(turn) % len(accepted)]] if accepted else None

    def set(self, case, data, context):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {data}"
EOF

# --- the run -------------------------------------------------------------------------------------
run_started=$(date +%s)
set +e
(
  cd "$work"
  COLUMNS=120 NO_PROXY=127.0.0.1 no_proxy=127.0.0.1 SCHEMATHESIS_HOOKS=madoguchi_hooks PYTHONPATH="$work" timeout --kill-after=10 "$budget" \
    "$venv/bin/schemathesis" --config-file "$work/schemathesis.toml" run "$base/api/openapi.json" \
    --checks all --exclude-checks positive_data_acceptance \
    --max-examples "$max_examples" \
    --workers 2 \
    --request-timeout 10 \
    --no-color \
    "$@"
) 2>&1 | tee "$work/out.txt"
rc=${PIPESTATUS[0]}
set -e

now=$(date +%s)
cases=$(grep -A1 '^Test cases:' "$work/out.txt" | tail -n 1 | grep -Eo '^ *[0-9]+' | tr -d ' ' || true)
echo "schemathesis: ${cases:-?} test cases against $base/api/openapi.json in $((now - run_started)) s" \
  "($((now - started)) s with install, start and seeding; exit $rc)"

problems=0
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
  echo "schemathesis did not finish within $budget s"; problems=1
elif [ "$rc" -ne 0 ]; then
  echo "schemathesis found failures (above)"; problems=1
fi
if ! kill -0 "$server" 2>/dev/null; then
  echo "the server died during the run"; problems=1
fi
if grep -q panicked "$work/server.log"; then
  echo "the server's log shows a panic:"; grep -B2 -A10 panicked "$work/server.log"; problems=1
fi
if [ "$problems" -ne 0 ]; then
  echo "--- server log (last 40 lines) ---"; tail -n 40 "$work/server.log"
  exit 1
fi
