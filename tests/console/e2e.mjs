// End-to-end test of the Gatehouse web console in headless Chromium (Debian's, driven by
// playwright-core). Run by tests/it/console.rs, which starts a real Gatehouse and passes:
//   GATEHOUSE_URL      the HTTP API / console base URL
//   ALICE_TOKEN        a bearer token of alice (every human role)
//   BOB_TOKEN          a bearer token of bob (viewer only)
//   GATEHOUSE_SCREENSHOTS  optional: a directory (relative to the repository) for screenshots
// It prints `gatehouse:start-worker` when the Rust side should start the evaluation worker
// (so the run is seen at 0 before it moves). Every wait has a deadline; any failed step exits 1.

import { chromium } from "playwright-core";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";

const BASE = process.env.GATEHOUSE_URL;
const ALICE = process.env.ALICE_TOKEN;
const BOB = process.env.BOB_TOKEN;
const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const SHOTS = process.env.GATEHOUSE_SCREENSHOTS ? resolve(REPO_ROOT, process.env.GATEHOUSE_SCREENSHOTS) : null;
const DEADLINE = 30_000;
const POLICY = "media";

if (!BASE || !ALICE || !BOB) {
  console.error("set GATEHOUSE_URL, ALICE_TOKEN and BOB_TOKEN");
  process.exit(2);
}

let current = "launch";
function step(name) {
  current = name;
  console.log(`step: ${name}`);
}

async function shot(page, name) {
  if (!SHOTS) return;
  mkdirSync(SHOTS, { recursive: true });
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

/** The HTTP API as a host system uses it (not the console): repo binding and decisions. */
async function hostCommand(op, body) {
  const response = await fetch(`${BASE}/v1/commands/${op}`, {
    method: "POST",
    headers: { Authorization: `Bearer ${ALICE}`, "Content-Type": "application/json", "Idempotency-Key": `e2e-${op}-${JSON.stringify(body)}` },
    body: JSON.stringify(body),
  });
  const json = await response.json();
  if (!response.ok) throw new Error(`${op}: ${response.status} ${JSON.stringify(json)}`);
  return json;
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

async function signIn(page, token, user) {
  await page.goto(`${BASE}/`);
  await page.locator("#signin").waitFor({ timeout: DEADLINE });
  await page.fill("#token", token);
  await page.click("#signin button[type=submit]");
  await page.locator("#user", { hasText: user }).waitFor({ timeout: DEADLINE });
}

async function go(page, path, ready) {
  await page.goto(`${BASE}${path}`);
  await page.locator(ready).first().waitFor({ timeout: DEADLINE });
}

/** Opens `path` again until `selector` shows (what the host changed reaches the read model). */
async function goUntil(page, path, selector) {
  const deadline = Date.now() + DEADLINE;
  for (;;) {
    await page.goto(`${BASE}${path}`);
    await page.locator("main h1").waitFor({ timeout: DEADLINE });
    if (await page.locator(selector).count() > 0) return;
    if (Date.now() > deadline) throw new Error(`${selector} never showed on ${path}`);
    await page.waitForTimeout(200);
  }
}

/** Clicks `selector`, then confirms the dialog (with `reason` when it asks for one). */
async function confirmed(page, selector, reason) {
  await page.click(selector);
  const dialog = page.locator("dialog#confirm[open]");
  await dialog.waitFor({ timeout: DEADLINE });
  if (reason) await dialog.locator("textarea[name=reason]").fill(reason);
  await dialog.locator("button[value=ok]").click();
  await page.locator("dialog#confirm[open]").waitFor({ state: "detached", timeout: DEADLINE });
}

async function draft(page, rules, notes) {
  await page.locator("#draft-rules").fill(JSON.stringify(rules, null, 2));
  await page.fill("#draft-notes", notes);
  await page.click("#draft button[type=submit]");
}

const rules = (threshold) => ({
  rules: [
    { id: "scan", condition: "scan.status != \"clean\"", decision: "quarantine", reason: "scan not clean" },
    { id: "low-quality", condition: `quality < ${threshold}`, decision: "deny", reason: "low quality" },
  ],
  default_decision: "allow", default_reason: "default", score: "quality * 10.0",
});

/** Waits for the run page to show a run of `status`; answers the processed counts seen. */
async function watchRun(page, status) {
  const seen = [];
  const deadline = Date.now() + 120_000;
  for (;;) {
    const bar = page.locator("#run [role=progressbar]");
    const now = await bar.getAttribute("aria-valuenow").catch(() => null);
    if (now !== null && seen[seen.length - 1] !== Number(now)) seen.push(Number(now));
    const s = await page.locator("#run [data-status]").getAttribute("data-status").catch(() => null);
    if (s === status) return seen;
    if (s && s !== "running") throw new Error(`the run ended ${s}, expected ${status}`);
    if (Date.now() > deadline) throw new Error(`the run is still not ${status}; processed seen: ${seen}`);
    await page.waitForTimeout(50);
  }
}

// A persistent context on a fresh directory: Chromium's --user-data-dir (playwright refuses it
// among `args`), removed at the end.
const profile = mkdtempSync(join(tmpdir(), "gatehouse-console-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1280, height: 860 },
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const failures = [];
const page = await context.newPage();
page.on("pageerror", (e) => failures.push(`page error: ${e.message}`));

try {
  step("sign in as alice");
  await signIn(page, ALICE, "alice");
  check((await page.textContent("#roles")).includes("approver"), "alice's roles are shown");

  step("create a policy");
  await page.locator("#create-policy").waitFor({ timeout: DEADLINE });
  await shot(page, "signed-in-policies-empty");
  await page.fill("#create-policy input[name=policy_id]", POLICY);
  await page.fill("#create-policy input[name=name]", "Media catalog");
  await page.fill("#create-policy input[name=description]", "what the public catalog may show");
  await page.locator("#create-policy textarea[name=attributes]").fill(JSON.stringify({
    kind: "string", quality: "double", scan: { status: "string", critical: "int" },
  }));
  await page.click("#create-policy button[type=submit]");
  await page.locator("#draft").waitFor({ timeout: DEADLINE });

  step("a draft with a syntax error is refused, shown at its line and column");
  const broken = rules(0.3);
  broken.rules[1].condition = "quality <";
  await draft(page, broken, "first try");
  const problem = page.locator("#draft-errors .problem").first();
  await problem.waitFor({ timeout: DEADLINE });
  check(await page.locator("#draft-errors [data-code=invalid_rules]").count() === 1, "the code invalid_rules is shown");
  const line = await problem.getAttribute("data-line");
  const column = await problem.getAttribute("data-column");
  check(line === "1" && Number(column) > 0, `the problem has a line and a column (line ${line}, column ${column})`);
  check((await problem.textContent()).includes(`line ${line}, column ${column}`), "the line and column are printed");
  check((await problem.textContent()).includes("rules[1].condition"), "the problem names the rule's condition");
  check(/document line \d+/.test(await problem.textContent()), "the problem names its line in the document");
  await shot(page, "policy-draft-validation-error");

  step("draft v1 and v2");
  await draft(page, rules(0.3), "deny quality below 0.3");
  await page.locator("tr[data-version='1']").waitFor({ timeout: DEADLINE });
  await draft(page, rules(0.5), "raise the quality bar to 0.5");
  await page.locator("tr[data-version='2']").waitFor({ timeout: DEADLINE });

  step("rule-by-rule diff of v1 and v2");
  await page.click("#diff-form button[type=submit]");
  await page.locator("#diff tr.diff-modified").waitFor({ timeout: DEADLINE });
  const diffText = await page.textContent("#diff");
  check(diffText.includes("quality < 0.3") && diffText.includes("quality < 0.5"), "the diff shows the condition from → to");

  step("the catalog is imported (by the host system), then Prepare v1 and watch it move");
  // The Rust side imported the catalog before starting this script; the confirmation shows its size.
  await page.click("tr[data-version='1'] button.prepare");
  await page.locator("dialog#confirm[open]").waitFor({ timeout: DEADLINE });
  const prepareText = await page.textContent("dialog#confirm");
  check(/\(\d+ now\)/.test(prepareText), `the Prepare confirmation states the snapshot size: ${prepareText}`);
  await page.fill("#batch-size", "100");
  await page.click("dialog#confirm button[value=ok]");
  await page.waitForURL(/\/console\/runs\/media%3A1$/, { timeout: DEADLINE });
  await page.locator("#run [data-status=running]").waitFor({ timeout: DEADLINE });
  await page.locator("#live", { hasText: "live" }).waitFor({ timeout: DEADLINE });
  check(await page.locator("#cancel").count() === 1, "Cancel is offered while running");
  check(await page.locator("#promote").count() === 0, "Promote is not offered while running");
  check(await page.locator("#blocking li").count() > 0, "the blocking reasons are shown");
  await shot(page, "run-running");
  console.log("gatehouse:start-worker");
  const seen = await watchRun(page, "success");
  const total = Number(await page.locator("#run [role=progressbar]").getAttribute("aria-valuemax"));
  console.log(`processed seen: ${seen.join(" → ")} of ${total}`);
  check(seen[0] === 0 && seen[seen.length - 1] === total && total > 0, "the progress bar moved from 0 to the snapshot, live");
  check(await page.locator("#cancel").count() === 0, "Cancel is gone once the run ended");

  step("diff of the successful run, then Promote v1");
  await page.locator("#diff-summary").waitFor({ timeout: DEADLINE });
  await page.locator("#promote").waitFor({ timeout: DEADLINE });
  await page.click("#promote");
  await page.locator("#promote-summary").waitFor({ timeout: DEADLINE });
  check((await page.textContent("#promote-summary")).includes("from none to v1"), "the confirmation states the version change");
  await page.click("dialog#confirm button[value=ok]");
  await page.locator("#run-status", { hasText: "promoted" }).waitFor({ timeout: DEADLINE });

  step("Prepare v2, see its diff against v1 (regressions, collapsible top items), Promote");
  await go(page, `/console/policies/${POLICY}`, "tr[data-version='2'] button.prepare");
  await page.click("tr[data-version='2'] button.prepare");
  await page.fill("#batch-size", "500");
  await page.click("dialog#confirm button[value=ok]");
  await page.waitForURL(/media%3A2$/, { timeout: DEADLINE });
  await watchRun(page, "success");
  await page.locator("#diff-summary").waitFor({ timeout: DEADLINE });
  const regressions = Number(await page.textContent("#diff-summary [data-diff=regressions] b"));
  check(regressions > 0, `raising the bar regresses items (${regressions})`);
  check(!(await page.locator("#top-regressions table").isVisible()), "the top regressions start collapsed");
  await page.click("#top-regressions summary");
  await page.locator("#top-regressions table").waitFor({ state: "visible", timeout: DEADLINE });
  await shot(page, "run-diff");
  await page.click("#promote");
  await page.locator("#promote-summary").waitFor({ timeout: DEADLINE });
  const summary = await page.textContent("#promote-summary");
  check(summary.includes("from v1 to v2") && summary.includes(`${regressions} regressions`), `the confirmation states what changes: ${summary}`);
  await page.click("dialog#confirm button[value=ok]");
  await page.locator("#run-status", { hasText: "promoted" }).waitFor({ timeout: DEADLINE });
  await go(page, "/console/runs", "tr[data-run]");
  check(await page.locator("tr[data-run] .badge.success").count() >= 2, "the runs list colors both runs as succeeded");
  await shot(page, "runs");
  await go(page, `/console/policies/${POLICY}`, "tr.active-version[data-version='2']");
  await shot(page, "policy");

  step("a refusal is shown with its code and message");
  await page.click("tr[data-version='2'] button.restore");
  await page.click("dialog#confirm button[value=ok]");
  await page.locator("[data-code=unchanged]").waitFor({ timeout: DEADLINE });

  step("release a quarantined item");
  await hostCommand("repo.bind", { repo: "media-repo", policy_id: POLICY, auto_release: false });
  const decision = await hostCommand("decision.evaluate", { repo: "media-repo", item_id: "m-00007", action: "publish" });
  check(decision.decision === "quarantine", `m-00007 is quarantined: ${JSON.stringify(decision)}`);
  await goUntil(page, "/console/quarantine", "tr[data-item='m-00007']");
  await shot(page, "quarantine");
  await page.click("tr[data-item='m-00007'] a");
  await page.locator("#release").waitFor({ timeout: DEADLINE });
  // The reason is required: confirming without one does not close the dialog.
  await page.click("#release");
  await page.locator("dialog#confirm[open]").waitFor({ timeout: DEADLINE });
  await page.click("dialog#confirm button[value=ok]");
  check(await page.locator("dialog#confirm[open]").count() === 1, "a release without a reason is not sent");
  await page.click("dialog#confirm button[value=cancel]");
  await shot(page, "quarantine-case");
  await confirmed(page, "#release", "false positive: scanned again by hand");
  await page.locator("h1 .badge.released").waitFor({ timeout: DEADLINE });
  check(await page.locator("#release").count() === 0, "no Release once released");

  step("create a flag, move its rollout, emergency-stop it");
  await go(page, "/console/flags", "#create-flag");
  await page.fill("#create-flag input[name=flag]", "checkout.new-flow");
  await page.fill("#create-flag input[name=description]", "the new checkout");
  await page.click("#create-flag button[type=submit]");
  await page.locator("#rollout").waitFor({ timeout: DEADLINE });
  await page.fill("#rollout-percentage", "25");
  await page.fill("#rollout-reason", "first quarter of users");
  await page.click("#rollout button[type=submit]");
  await page.locator("dialog#confirm[open]", { hasText: "from 0% (percentage) to 25%" }).waitFor({ timeout: DEADLINE });
  await page.click("dialog#confirm button[value=ok]");
  await page.locator("#percentage", { hasText: "25%" }).waitFor({ timeout: DEADLINE });
  await confirmed(page, "#emergency-stop", "errors in checkout");
  await page.locator("h1 .badge.stopped").waitFor({ timeout: DEADLINE });
  await page.locator("#resume").waitFor({ timeout: DEADLINE });
  await shot(page, "flag");
  await go(page, "/console/flags", "#safe-mode");
  await shot(page, "flags");

  step("every action is in the audit view");
  await go(page, "/console/audit?actor=alice", "#audit-results table");
  for (const type of ["PolicyCreated", "PolicyVersionDrafted", "RunPrepared", "PolicyPromoted", "RepoBound",
    "QuarantineReleased", "FlagCreated", "RolloutSet", "FlagEmergencyStopped"]) {
    check(await page.locator(`#audit-results tr[data-type=${type}]`).count() > 0, `the audit view lists ${type}`);
  }
  await page.fill("#audit-filter input[name=event_type]", "QuarantineReleased");
  await page.click("#audit-filter button[type=submit]");
  await page.locator("#audit-results tr[data-type=QuarantineReleased]").waitFor({ timeout: DEADLINE });
  check(await page.locator("#audit-results tr[data-type]").count() === 1, "the event type filter keeps one event");
  await page.click("#audit-results tr[data-type=QuarantineReleased] summary");
  check((await page.textContent("#audit-results pre")).includes("false positive"), "the event's payload shows the reason");
  await shot(page, "audit");

  step("sign out");
  await page.click("#signout");
  await page.locator("#signin").waitFor({ timeout: DEADLINE });
  check(!(await page.evaluate(() => sessionStorage.getItem("gatehouse.token"))), "the token is forgotten");

  step("bob, a viewer, is offered no write");
  const bob = await context.newPage();
  bob.on("pageerror", (e) => failures.push(`page error (bob): ${e.message}`));
  await signIn(bob, BOB, "bob");
  check((await bob.textContent("#roles")).trim() === "viewer", "bob's roles are shown");
  await go(bob, "/console/policies", "table");
  check(await bob.locator("#create-policy").count() === 0, "no policy creation for bob");
  await go(bob, `/console/policies/${POLICY}`, "tr[data-version='2']");
  for (const s of ["#draft", "button.prepare", "button.restore"]) check(await bob.locator(s).count() === 0, `bob sees no ${s}`);
  check(await bob.locator("#version-rules, button:has-text('Rules')").count() > 0, "bob can read the rules");
  await go(bob, "/console/runs/media%3A2", "#run");
  for (const s of ["#promote", "#cancel", "#resume"]) check(await bob.locator(s).count() === 0, `bob sees no ${s}`);
  await go(bob, "/console/quarantine/media-repo/m-00007", "h1");
  check(await bob.locator("#release, #reject").count() === 0, "bob sees no Release/Reject");
  await go(bob, "/console/flags/checkout.new-flow", "h1 .badge");
  for (const s of ["#rollout", "#emergency-stop", "#resume"]) check(await bob.locator(s).count() === 0, `bob sees no ${s}`);
  await go(bob, "/console/flags", "#safe-mode");
  check(await bob.locator("#safe-mode-toggle, #create-flag").count() === 0, "bob sees no safe mode switch nor flag creation");
  check(failures.length === 0, failures.join("; "));
  console.log("console e2e: ok");
} catch (e) {
  console.error(`console e2e failed at step "${current}": ${e.message}`);
  await shot(page, "failure").catch(() => {});
  process.exitCode = 1;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
