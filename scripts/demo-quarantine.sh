#!/usr/bin/env bash
# Walks publish decisions with quarantine against a running Gatehouse (e.g. `scripts/up.sh`, then
# `source .gatehouse/env.sh`): deny → quarantine → blocked read → release → read → reject →
# blocked read → a second resolution refused → search of the publish-ready items (the search
# indexer keeps them; `gatehouse up` runs it). Each step prints the CLI's output and checks it;
# the last line is `demo ok`. Exit 0 when every check held, 1 at the first that did not.
#
#   scripts/demo-quarantine.sh               # names its policy and repo demo-gate-<time>, demo-<time>
#   DEMO_ID=x scripts/demo-quarantine.sh     # ... demo-gate-x, demo-x (fresh names each time)
#   GATEHOUSE_BIN=target/debug/gatehouse scripts/demo-quarantine.sh
#
# It needs NATS_URL, NATS_USER and NATS_PASSWORD (Gatehouse's own user `gatehouse`, as env.sh
# sets: it acts as alice, bob and svc with --actor) and a running evaluation worker, since
# policy version 1 is prepared over the catalog and promoted, and a running search indexer. The
# integration test
# `quarantine::the_demo_script_runs_against_a_running_system` runs it.
set -euo pipefail

G="${GATEHOUSE_BIN:-gatehouse}"
id="${DEMO_ID:-$(date +%s)}"
policy="demo-gate-$id"
repo="demo-$id"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

step() { printf '\n== %s\n' "$*"; }
fail() { printf 'demo FAILED: %s\n' "$*" >&2; exit 1; }
# expect <exit code> <text> <command...>: runs it, prints its output, checks both.
expect() {
  local want_rc="$1" want_text="$2"
  shift 2
  local out rc=0
  out="$("$@" 2>&1)" || rc=$?
  printf '%s\n' "$out"
  [[ "$rc" == "$want_rc" ]] || fail "exit $rc, expected $want_rc: $*"
  [[ "$out" == *"$want_text"* ]] || fail "no \`$want_text\` in the output of: $*"
}

step "a policy that decides for hosts: it declares action and repo"
expect 0 "policy $policy created" "$G" --actor alice policy create "$policy" --name "Demo gate" \
  --attributes '{"quality":"double","scan":{"status":"string","critical":"int"},"action":"string","repo":"string"}'
cat >"$work/rules.json" <<'RULES'
{
  "rules": [
    {"id": "critical", "condition": "scan.critical > 0", "decision": "deny", "reason": "critical findings"},
    {"id": "scan", "condition": "scan.status != \"clean\"", "decision": "quarantine", "reason": "scan not clean"},
    {"id": "promote-bar", "condition": "action == \"promote\" && quality < 0.8", "decision": "deny", "reason": "promotion needs quality 0.8"}
  ],
  "default_decision": "allow",
  "score": "quality * 10.0"
}
RULES
expect 0 "version 1 drafted" "$G" --actor alice policy draft "$policy" --file "$work/rules.json" --notes "demo"
expect 0 "run $policy:1 prepared" "$G" --actor alice run prepare "$policy" 1 --coverage-threshold 0 --max-errors 1000000000
for _ in $(seq 1 120); do
  status="$("$G" --json run show "$policy:1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')"
  [[ "$status" == running ]] || break
  sleep 0.5
done
[[ "$status" == success ]] || fail "run $policy:1 ended $status"
expect 0 "version 1 is active" "$G" --actor alice run promote "$policy:1" --coverage-threshold 0 --max-errors 1000000000

step "bind repo $repo to it"
expect 0 "repo $repo bound to policy $policy (budget 250 ms, auto-release on)" \
  "$G" --actor alice repo bind "$repo" --policy "$policy"

step "deny: critical findings"
expect 0 "DENY publish of pkg-bad in $repo: deny (critical: critical findings)" \
  "$G" --actor svc decide "$repo" pkg-bad --action publish \
  --attributes '{"quality":0.9,"scan":{"status":"clean","critical":3}}'

step "the same rules read the action: publishing at quality 0.6 is allowed, promoting it is not"
expect 0 "ALLOW publish of pkg-mid" "$G" --actor svc decide "$repo" pkg-mid --action publish \
  --attributes '{"quality":0.6,"scan":{"status":"clean","critical":0}}'
expect 0 "DENY promote of pkg-mid in $repo: deny (promote-bar" "$G" --actor svc decide "$repo" pkg-mid \
  --action promote --attributes '{"quality":0.6,"scan":{"status":"clean","critical":0}}'

step "quarantine: the scan is not clean; a case opens"
expect 0 "case: quarantined opened" "$G" --actor svc decide "$repo" pkg-sus --action publish \
  --attributes '{"quality":0.9,"scan":{"status":"suspicious","critical":0}}' \
  --digest sha256:5a5a5a5a5a5a5a5a
expect 0 "quarantined" "$G" quarantine list --repo "$repo" --status quarantined

step "blocked read: by item and by digest (HTTP would answer 423)"
expect 1 "error [quarantined_blob]" "$G" artifact can-read "$repo" pkg-sus
expect 1 "error [quarantined_blob]" "$G" artifact can-read "$repo" --digest sha256:5a5a5a5a5a5a5a5a

step "release (an approver, with a reason)"
expect 0 "case pkg-sus in $repo: released" "$G" --actor alice quarantine release "$repo" pkg-sus \
  --reason "rescanned: false positive"

step "read: allowed again, as a waiver"
expect 0 "allowed: pkg-sus in $repo (case released: a waiver)" "$G" artifact can-read "$repo" pkg-sus

step "reject: another quarantined item stays blocked"
expect 0 "case: quarantined opened" "$G" --actor svc decide "$repo" pkg-mal --action publish \
  --attributes '{"quality":0.9,"scan":{"status":"infected","critical":0}}'
expect 0 "case pkg-mal in $repo: rejected" "$G" --actor alice quarantine reject "$repo" pkg-mal \
  --reason "malware confirmed"
expect 1 "is rejected: reads are refused (rejected by \`alice\`)" "$G" artifact can-read "$repo" pkg-mal

step "a second resolution is refused, naming the state and who resolved it"
expect 1 "error [invalid_state]: the case of \`pkg-mal\` in repo \`$repo\` is already rejected (by \`alice\`" \
  "$G" --actor bob quarantine release "$repo" pkg-mal --reason "oops"

step "the case with its decision history"
expect 0 "case pkg-mal in $repo: rejected" "$G" quarantine get "$repo" pkg-mal

step "search: the publish-ready items (allowed, or released), once the indexer caught up"
expect 0 "ALLOW publish of pkg-ok" "$G" --actor svc decide "$repo" pkg-ok --action publish \
  --attributes '{"quality":0.95,"scan":{"status":"clean","critical":0}}'
for _ in $(seq 1 120); do
  pending="$("$G" --json catalog index-status | python3 -c 'import json,sys; print(json.load(sys.stdin)["pending"])')"
  [[ "$pending" == 0 ]] && break
  sleep 0.5
done
[[ "$pending" == 0 ]] || fail "the search indexer did not catch up ($pending events pending)"
expect 0 "pending events:   0" "$G" catalog index-status
# pkg-ok (allowed) and pkg-sus (released) are found; denied, rejected and re-denied items are not.
expect 0 "2 hit(s)" "$G" catalog search "$repo" --repo "$repo"
expect 0 "pkg-sus" "$G" catalog search suspicious --repo "$repo"
expect 0 "0 hit(s)" "$G" catalog search infected --repo "$repo"

printf '\ndemo ok\n'
