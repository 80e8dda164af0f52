// Runs: every run or one policy's, color-coded by status with a progress bar; a run's page
// follows it live (server-sent events) and offers Cancel, Resume and Promote with a
// confirmation, its blocking reasons and, once it succeeded, its diff.

import * as api from "./api.js";
import { h, fill, link, badge, time, table, kv, progress, errorBox, showError, field, busy, confirm } from "./ui.js";

const STATUSES = ["running", "success", "failed", "cancelled"];

export function runsTable(runs, withPolicy = true) {
  const cols = [{ label: "Run" }, withPolicy ? { label: "Policy" } : null, { label: "Version", num: true }, { label: "Status" },
    { label: "Progress" }, { label: "Processed", num: true }, { label: "Prepared" }].filter(Boolean);
  const rows = runs.map((r) => ({
    dataset: { run: r.run_id, status: r.status },
    cells: [
      link(`/console/runs/${encodeURIComponent(r.run_id)}`, r.run_id),
      withPolicy ? link(`/console/policies/${encodeURIComponent(r.policy_id)}`, r.policy_id) : null,
      `v${r.version}`,
      statusBadge(r),
      progress(r.counters.processed, r.counters.total_ready_snapshot, r.status),
      `${r.counters.processed} / ${r.counters.total_ready_snapshot}`,
      h("span", {}, time(r.prepared_at), " by ", r.prepared_by),
    ].filter((c) => c !== null),
  }));
  return table(cols, rows, "No run yet.");
}

function statusBadge(r) {
  if (r.promoted) return badge("promoted", "success");
  if (r.status === "success" && r.ready_to_promote) return h("span", {}, badge("success"), " ", badge("ready", "ok"));
  return badge(r.status);
}

export async function list(ctx, view) {
  const params = new URLSearchParams(location.search);
  const filter = { limit: 200 };
  if (params.get("policy_id")) filter.policy_id = params.get("policy_id");
  if (params.get("status")) filter.status = params.get("status");
  const runs = await api.query("run.list", filter);
  const policy = h("input", { name: "policy_id", value: filter.policy_id || "", placeholder: "any" });
  const status = h("select", { name: "status" }, h("option", { value: "" }, "any"),
    STATUSES.map((s) => h("option", { value: s, selected: s === filter.status }, s)));
  const form = h("form", { class: "row card" }, field("Policy", policy), field("Status", status), h("button", { type: "submit" }, "Filter"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    if (policy.value) q.set("policy_id", policy.value);
    if (status.value) q.set("status", status.value);
    ctx.navigate(`/console/runs${q.toString() ? `?${q}` : ""}`);
  });
  fill(view, h("h1", {}, "Runs"), form, runsTable(runs));
}

export async function show(ctx, view, runId) {
  const first = await api.query("run.get", { run_id: runId });
  const live = h("span", { class: "live", id: "live" });
  const body = h("div", { id: "run" });
  const actionSlot = h("div", { id: "run-errors" });
  const diffSlot = h("div", { id: "run-diff" });
  fill(view,
    h("div", { class: "crumbs" }, link("/console/runs", "Runs"), " / ",
      link(`/console/policies/${encodeURIComponent(first.policy_id)}`, first.policy_id), " / ", runId),
    h("h1", {}, `Run ${runId} `, live),
    actionSlot, body, diffSlot);
  let diffShown = false;
  const render = (run) => {
    fill(body, runCard(ctx, run, actionSlot));
    if (run.status === "success" && !diffShown) {
      diffShown = true;
      showDiff(run, diffSlot);
    }
  };
  render(first);
  if (first.status === "running") {
    live.textContent = "● live";
    const stop = api.followRun(runId, (run, ended) => {
      render(run);
      if (ended) live.textContent = "";
    }, (err) => { live.textContent = ""; showError(actionSlot, err); });
    ctx.onLeave(stop);
  }
}

function runCard(ctx, run, slot) {
  const c = run.counters;
  const pct = c.total_ready_snapshot ? ((100 * c.processed) / c.total_ready_snapshot).toFixed(1) : "—";
  const counters = [["Snapshot", c.total_ready_snapshot], ["Processed", c.processed], ["Eligible", c.eligible],
    ["Ineligible", c.ineligible], ["Quarantined", c.quarantined], ["Pending", c.pending], ["Errors", c.errors]];
  return h("div", { class: "card", dataset: { status: run.status } },
    h("div", { class: "row", style: "align-items: center" },
      h("span", { id: "run-status" }, statusBadge(run)),
      h("div", { class: "grow" }, progress(c.processed, c.total_ready_snapshot, run.status)),
      h("b", { id: "run-percent" }, `${pct}%`)),
    h("div", { class: "counters", id: "counters" }, counters.map(([k, v]) => h("div", { dataset: { counter: k.toLowerCase() } }, h("b", {}, String(v)), k))),
    h("h2", {}, "Promotion"),
    run.ready_to_promote
      ? h("p", { class: "notice", id: "ready" }, "Ready to promote: every threshold holds.")
      : h("ul", { id: "blocking" }, (run.blocking_reasons || []).map((b) => h("li", {}, blocking(b)))),
    h("div", { class: "actions" },
      ctx.can("operator") && run.status === "running" ? h("button", { id: "cancel", class: "danger", onclick: (e) => cancel(ctx, run, e.target, slot) }, "Cancel run") : null,
      ctx.can("operator") && (run.status === "failed" || run.status === "cancelled") ? h("button", { id: "resume", onclick: (e) => resume(ctx, run, e.target, slot) }, "Resume") : null,
      ctx.can("approver") && run.ready_to_promote && !run.promoted ? h("button", { id: "promote", class: "primary", onclick: (e) => promote(ctx, run, e.target, slot) }, "Promote") : null),
    kv([
      ["Version", `v${run.version}`],
      ["Thresholds", `coverage ≥ ${run.coverage_threshold}, errors ≤ ${run.max_errors}`],
      ["Batches", `${run.batches_done} / ${run.batches}`],
      ["Snapshot cutoff", time(run.snapshot_cutoff)],
      ["Prepared", h("span", {}, time(run.prepared_at), " by ", run.prepared_by)],
      ["Ended", time(run.ended_at)],
      run.failure ? ["Failure", h("span", { class: "error" }, run.failure)] : null,
    ].filter(Boolean)),
    run.error_samples && run.error_samples.length
      ? h("details", {}, h("summary", {}, `Error samples (${run.error_samples.length})`),
        table([{ label: "Item" }, { label: "Message" }], run.error_samples.map((e) => [h("code", {}, e.item_id), e.message])))
      : null);
}

function blocking(b) {
  switch (b.condition) {
    case "status": return h("span", {}, badge("blocked"), ` the run is ${b.status}, not success`);
    case "coverage": return h("span", {}, badge("blocked"), ` coverage ${(b.coverage * 100).toFixed(1)}% (${b.processed} / ${b.total_ready_snapshot}) is below ${(b.threshold * 100).toFixed(1)}%`);
    case "errors": return h("span", {}, badge("blocked"), ` ${b.errors} errors, at most ${b.max_errors} allowed`);
    default: return h("code", {}, JSON.stringify(b));
  }
}

async function showDiff(run, slot) {
  try {
    const d = await api.query("run.diff", { run_id: run.run_id });
    const items = (list) => table([{ label: "Item" }, { label: "Score", num: true }, { label: "Before" }, { label: "After" }, { label: "Rule" }, { label: "Reason" }],
      list.map((i) => [h("code", {}, i.item_id), i.score.toFixed(2), badge(i.before), badge(i.after), i.rule_id || h("span", { class: "muted" }, "default"), i.reason]), "None.");
    fill(slot, h("div", { class: "card", id: "diff-summary" },
      h("h2", { style: "margin-top: 0" }, d.active_version ? `Diff against the active v${d.active_version}` : "Diff: nothing is active, every item is newly evaluated"),
      h("div", { class: "counters" }, [["Regressions", d.regressions, "bad"], ["Improvements", d.improvements, "ok"], ["Unchanged", d.unchanged], ["Other changes", d.other_changes], ["Newly evaluated", d.newly_evaluated]]
        .map(([k, v]) => h("div", { dataset: { diff: k.toLowerCase().replace(" ", "_") } }, h("b", {}, String(v)), k))),
      h("details", { id: "top-regressions" }, h("summary", {}, `Top regressions (${d.top_regressions.length})`), items(d.top_regressions)),
      h("details", { id: "top-improvements" }, h("summary", {}, `Top improvements (${d.top_improvements.length})`), items(d.top_improvements))));
  } catch (e) { fill(slot, errorBox(e)); }
}

async function cancel(ctx, run, button, slot) {
  const ok = await confirm({
    title: `Cancel ${run.run_id}?`,
    message: `Stops evaluating v${run.version} of ${run.policy_id} at ${run.counters.processed} of ${run.counters.total_ready_snapshot} items. The active version does not change; the run can be resumed.`,
    confirmLabel: "Cancel run", danger: true,
  });
  if (!ok) return;
  await act(ctx, button, slot, "policy.cancel_run", { run_id: run.run_id });
}

async function resume(ctx, run, button, slot) {
  const ok = await confirm({ title: `Resume ${run.run_id}?`, message: `Evaluates the rest of the snapshot with v${run.version}.`, confirmLabel: "Resume" });
  if (!ok) return;
  await act(ctx, button, slot, "policy.resume_run", { run_id: run.run_id });
}

async function promote(ctx, run, button, slot) {
  const [policy, diff] = await Promise.all([
    api.query("policy.get", { policy_id: run.policy_id }),
    api.query("run.diff", { run_id: run.run_id }).catch(() => null),
  ]);
  const c = run.counters;
  const ok = await confirm({
    title: `Promote v${run.version} of ${run.policy_id}?`,
    message: h("div", { id: "promote-summary" },
      h("p", {}, `The active version of ${run.policy_id} changes from `,
        h("b", {}, policy.active_version ? `v${policy.active_version}` : "none"), " to ", h("b", {}, `v${run.version}`),
        ": every decision from now on uses it, and policy.promoted is announced."),
      h("p", {}, `Over ${c.total_ready_snapshot} items: ${c.eligible} eligible, ${c.ineligible} ineligible, ${c.quarantined} quarantined.`),
      diff ? h("p", {}, `${diff.regressions} regressions, ${diff.improvements} improvements, ${diff.newly_evaluated} newly evaluated.`) : null),
    confirmLabel: "Promote",
  });
  if (!ok) return;
  await act(ctx, button, slot, "policy.promote", { run_id: run.run_id, coverage_threshold: run.coverage_threshold, max_errors: run.max_errors });
}

async function act(ctx, button, slot, op, body) {
  await busy(button, async () => {
    try {
      await api.command(op, body);
      showError(slot, null);
      ctx.refresh();
    } catch (err) { showError(slot, err); }
  });
}
