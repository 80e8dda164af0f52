// Quarantine: the queue of cases with filters; a case with its decision history, Release and
// Reject with a required reason.

import * as api from "./api.js";
import { h, fill, link, badge, time, table, kv, showError, field, busy, confirm } from "./ui.js";

const STATUSES = ["quarantined", "released", "rejected"];

export async function list(ctx, view) {
  const params = new URLSearchParams(location.search);
  const filter = { limit: 200, status: params.has("status") ? params.get("status") || undefined : "quarantined" };
  if (params.get("repo")) filter.repo = params.get("repo");
  const page = await api.query("quarantine.list", filter);
  const repo = h("input", { name: "repo", value: filter.repo || "", placeholder: "any" });
  const status = h("select", { name: "status" }, h("option", { value: "" }, "any"),
    STATUSES.map((s) => h("option", { value: s, selected: s === filter.status }, s)));
  const form = h("form", { class: "row card", id: "quarantine-filter" }, field("Repo", repo), field("Status", status), h("button", { type: "submit" }, "Filter"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const q = new URLSearchParams({ status: status.value });
    if (repo.value) q.set("repo", repo.value);
    ctx.navigate(`/console/quarantine?${q}`);
  });
  const rows = page.cases.map((c) => ({
    dataset: { item: c.item_id },
    cells: [
      c.repo,
      link(`/console/quarantine/${encodeURIComponent(c.repo)}/${encodeURIComponent(c.item_id)}`, c.item_id),
      badge(c.status),
      `${c.policy_id} v${c.version}`,
      h("span", {}, h("code", {}, c.rule_id || "default"), " ", c.reason),
      String(c.decisions),
      time(c.opened_at),
    ],
  }));
  fill(view, h("h1", {}, "Quarantine"), form,
    h("p", { class: "muted" }, `${page.total} case(s)`),
    table([{ label: "Repo" }, { label: "Item" }, { label: "Status" }, { label: "Policy" }, { label: "Rule" },
      { label: "Decisions", num: true }, { label: "Opened" }], rows, "No case matches."));
}

export async function show(ctx, view, repo, itemId) {
  const c = await api.query("quarantine.get", { repo, item_id: itemId });
  const slot = h("div", { id: "case-errors" });
  const open = c.status === "quarantined";
  fill(view,
    h("div", { class: "crumbs" }, link("/console/quarantine", "Quarantine"), ` / ${repo} / ${itemId}`),
    h("h1", {}, itemId, " ", badge(c.status)),
    slot,
    h("div", { class: "card" }, kv([
      ["Repo", repo],
      ["Policy", h("span", {}, link(`/console/policies/${encodeURIComponent(c.policy_id)}`, c.policy_id), ` v${c.version}`)],
      ["Rule", h("span", {}, h("code", {}, c.rule_id || "default"), " ", c.reason)],
      ["Opened", h("span", {}, time(c.opened_at), " by ", c.opened_by)],
      ["Resolved", c.resolved_by ? h("span", {}, time(c.resolved_at), ` by ${c.resolved_by}: ${c.resolution_reason || ""}`) : "—"],
    ]),
    open && ctx.can("approver") ? h("div", { class: "actions" },
      h("button", { id: "release", class: "primary", onclick: (e) => resolve(ctx, "release", c, e.target, slot) }, "Release"),
      h("button", { id: "reject", class: "danger", onclick: (e) => resolve(ctx, "reject", c, e.target, slot) }, "Reject")) : null),
    h("h2", {}, "Decision history"),
    table([{ label: "Decided" }, { label: "Action" }, { label: "Decision" }, { label: "Policy" }, { label: "Rule" }, { label: "Input digest" }, { label: "By" }],
      (c.history || []).map((d) => [time(d.decided_at), d.action, badge(d.decision), `${d.policy_id} v${d.version}`,
        h("span", {}, h("code", {}, d.rule_id || "default"), " ", d.reason), h("code", {}, d.input_digest.slice(0, 19) + "…"), d.decided_by])));
}

async function resolve(ctx, what, c, button, slot) {
  const release = what === "release";
  const ok = await confirm({
    title: `${release ? "Release" : "Reject"} ${c.item_id}?`,
    message: release
      ? `${c.item_id} becomes readable in ${c.repo} and publish-ready; the case is closed for good.`
      : `${c.item_id} stays unreadable in ${c.repo} for good; the case is closed.`,
    confirmLabel: release ? "Release" : "Reject", danger: !release, reason: "Reason (required)",
  });
  if (!ok) return;
  await busy(button, async () => {
    try {
      await api.command(`quarantine.${what}`, { repo: c.repo, item_id: c.item_id, reason: ok.reason });
      ctx.refresh();
    } catch (err) { showError(slot, err); }
  });
}
