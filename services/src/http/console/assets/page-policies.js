// Policies: the list; a policy's versions, rules, rule-by-rule diff, draft and restore, and
// its runs with Prepare.

import * as api from "./api.js";
import { h, fill, link, badge, time, table, kv, json, errorBox, showError, values, field, busy, confirm } from "./ui.js";
import { runsTable } from "./page-runs.js";

export async function list(ctx, view) {
  const policies = await api.query("policy.list", { limit: 1000 });
  const rows = policies.map((p) => [
    link(`/console/policies/${encodeURIComponent(p.policy_id)}`, p.policy_id),
    p.name,
    String(p.latest_version),
    p.active_version ? badge(`v${p.active_version}`, "active") : h("span", { class: "muted" }, "none"),
    p.created_by,
    time(p.created_at),
    time(p.updated_at),
  ]);
  fill(view,
    h("h1", {}, "Policies"),
    table([{ label: "Policy" }, { label: "Name" }, { label: "Latest", num: true }, { label: "Active" },
      { label: "Created by" }, { label: "Created" }, { label: "Updated" }], rows, "No policy yet."),
    ctx.can("author") ? createForm(ctx) : null);
}

function createForm(ctx) {
  const slot = h("div");
  const attributes = h("textarea", { name: "attributes", style: "min-height: 90px" },
    JSON.stringify({ kind: "string", quality: "double" }, null, 2));
  const form = h("form", { class: "card", id: "create-policy" },
    h("h2", { style: "margin-top: 0" }, "New policy"),
    h("div", { class: "row" },
      field("Id", h("input", { name: "policy_id", required: true, pattern: "[a-z0-9][a-z0-9_-]*", placeholder: "media" })),
      h("div", { class: "grow" }, field("Name", h("input", { name: "name", required: true, style: "width: 100%" }))),
    ),
    field("Description", h("input", { name: "description" })),
    field("Attribute schema (JSON: name → type)", attributes),
    slot,
    h("div", { class: "actions" }, h("button", { class: "primary", type: "submit" }, "Create policy")));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const v = values(form);
    let attrs;
    try { attrs = JSON.parse(v.attributes); } catch (err) {
      return showError(slot, { code: "bad_request", field: "attributes", message: jsonProblem(v.attributes, err) });
    }
    await busy(e.submitter, async () => {
      try {
        await api.command("policy.create", { policy_id: v.policy_id, name: v.name, description: v.description, attributes: attrs });
        ctx.navigate(`/console/policies/${encodeURIComponent(v.policy_id)}`);
      } catch (err) { showError(slot, err); }
    });
  });
  return form;
}

/** A JSON syntax error with its line and column. */
export function jsonProblem(text, err) {
  const m = /position (\d+)/.exec(err.message);
  if (!m) return `not JSON: ${err.message}`;
  const before = text.slice(0, Number(m[1]));
  const line = before.split("\n").length;
  const column = before.length - before.lastIndexOf("\n");
  return `not JSON at line ${line}, column ${column}: ${err.message}`;
}

export async function show(ctx, view, policyId) {
  const [policy, versions, runs] = await Promise.all([
    api.query("policy.get", { policy_id: policyId }),
    api.query("policy.versions", { policy_id: policyId, limit: 1000 }),
    api.query("run.list", { policy_id: policyId, limit: 50 }),
  ]);
  const rulesSlot = h("div", { id: "version-rules" });
  const diffSlot = h("div", { id: "diff" });
  const actionSlot = h("div");
  const versionRows = versions.map((v) => ({
    class: v.active ? "active-version" : null,
    dataset: { version: String(v.version) },
    cells: [
      h("b", {}, `v${v.version}`),
      v.active ? badge("active") : null,
      v.author,
      time(v.drafted_at),
      h("span", {}, v.notes, v.restored_from ? h("span", { class: "muted" }, ` (restored from v${v.restored_from})`) : null),
      String(v.rule_count),
      h("div", { class: "actions", style: "margin: 0" },
        h("button", { onclick: () => showRules(policyId, v.version, rulesSlot) }, "Rules"),
        ctx.can("author") ? h("button", { class: "restore", onclick: (e) => restore(ctx, policyId, v, latest(versions), e.target, actionSlot) }, "Restore") : null,
        ctx.can("operator") && !v.active ? h("button", { class: "prepare", onclick: (e) => prepare(ctx, policyId, v.version, e.target, actionSlot) }, "Prepare") : null),
    ],
  }));
  fill(view,
    h("div", { class: "crumbs" }, link("/console/policies", "Policies"), " / ", policyId),
    h("h1", {}, policy.name, " ", h("span", { class: "muted" }, policyId)),
    h("div", { class: "card" }, kv([
      ["Description", policy.description || h("span", { class: "muted" }, "—")],
      ["Latest version", String(policy.latest_version)],
      ["Active version", policy.active_version ? badge(`v${policy.active_version}`, "active") : "none"],
      ["Four-eyes promotion", policy.require_second_approver ? "required" : "no"],
      ["Attributes", h("code", {}, JSON.stringify(policy.attributes))],
      ["Created", h("span", {}, time(policy.created_at), " by ", policy.created_by)],
      ["Updated", time(policy.updated_at)],
    ])),
    actionSlot,
    h("h2", {}, "Versions"),
    table([{ label: "Version" }, { label: "" }, { label: "Author" }, { label: "Drafted" }, { label: "Notes" },
      { label: "Rules", num: true }, { label: "" }], versionRows, "No version yet: draft the first one below."),
    rulesSlot,
    versions.length >= 2 ? diffForm(policyId, versions, diffSlot) : null,
    diffSlot,
    h("h2", {}, "Runs"),
    runsTable(runs, false),
    ctx.can("author") ? draftForm(ctx, policyId, versions) : null);
}

function latest(versions) {
  return versions.length ? versions[0].version : 0;
}

async function showRules(policyId, version, slot) {
  try {
    const v = await api.query("policy.version", { policy_id: policyId, version });
    const doc = v.rules;
    fill(slot, h("div", { class: "card" },
      h("h2", { style: "margin-top: 0" }, `Rules of v${version}`),
      table([{ label: "#" }, { label: "Id" }, { label: "Condition" }, { label: "Decision" }, { label: "Reason" }],
        doc.rules.map((r, i) => [String(i + 1), h("code", {}, r.id), h("code", {}, r.condition), badge(r.decision), r.reason])),
      kv([["Default", h("span", {}, badge(doc.default_decision), " ", doc.default_reason || "")],
        ["Score", h("code", {}, doc.score || "—")]])));
  } catch (e) { fill(slot, errorBox(e)); }
}

function diffForm(policyId, versions, slot) {
  const options = (selected) => versions.map((v) => h("option", { value: v.version, selected: v.version === selected }, `v${v.version}`));
  const from = h("select", { name: "from" }, options(versions[1].version));
  const to = h("select", { name: "to" }, options(versions[0].version));
  const form = h("form", { class: "row card", id: "diff-form" },
    field("From", from), field("To", to),
    h("button", { type: "submit" }, "Compare"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const diff = await api.query("policy.diff", { policy_id: policyId, from: Number(from.value), to: Number(to.value) });
      fill(slot, renderDiff(diff, from.value, to.value));
    } catch (err) { fill(slot, errorBox(err)); }
  });
  return form;
}

function change(c) {
  if (!c) return null;
  return h("span", {}, h("span", { class: "from" }, String(c.from ?? "")), " → ", h("span", { class: "to" }, String(c.to ?? "")));
}

function renderDiff(diff, from, to) {
  const rows = diff.rules.map((r) => ({
    class: `diff-${r.change}`,
    cells: [badge(r.change, "info"), h("code", {}, r.id || (r.rule && r.rule.id) || ""),
      r.change === "modified"
        ? h("div", {}, ["condition", "decision", "reason"].filter((k) => r[k]).map((k) => h("div", {}, h("span", { class: "muted" }, `${k}: `), change(r[k]))))
        : r.change === "moved" ? `position ${r.from_position + 1} → ${r.to_position + 1}`
        : h("span", {}, `at position ${r.position + 1}: `, h("code", {}, `${r.rule.condition} ⇒ ${r.rule.decision}`), ` (${r.rule.reason})`)],
  }));
  const extra = ["default_decision", "default_reason", "score"].filter((k) => diff[k]).map((k) => [k, change(diff[k])]);
  return h("div", { class: "card" },
    h("h2", { style: "margin-top: 0" }, `Diff v${from} → v${to}`),
    table([{ label: "Change" }, { label: "Rule" }, { label: "What" }], rows, "No rule changed."),
    extra.length ? kv(extra) : null,
    diff.unchanged && diff.unchanged.length ? h("p", { class: "muted" }, "Unchanged: ", diff.unchanged.join(", ")) : null);
}

const EXAMPLE_RULES = {
  rules: [{ id: "low-quality", condition: "quality < 0.4", decision: "deny", reason: "low quality" }],
  default_decision: "allow", default_reason: "default", score: "quality * 10.0",
};

function draftForm(ctx, policyId, versions) {
  const rules = h("textarea", { name: "rules", id: "draft-rules", spellcheck: "false", style: "min-height: 260px" }, JSON.stringify(EXAMPLE_RULES, null, 2));
  if (versions.length) {
    // Start from the latest version's rules.
    api.query("policy.version", { policy_id: policyId, version: versions[0].version })
      .then((v) => { if (rules.value === JSON.stringify(EXAMPLE_RULES, null, 2)) rules.value = JSON.stringify(v.rules, null, 2); })
      .catch(() => {});
  }
  const slot = h("div", { id: "draft-errors" });
  const form = h("form", { class: "card", id: "draft" },
    h("h2", { style: "margin-top: 0" }, "Draft a new version"),
    field("Rules document (JSON)", rules),
    field("Notes", h("input", { name: "notes", id: "draft-notes", required: true, placeholder: "what changes and why" })),
    slot,
    h("div", { class: "actions" }, h("button", { class: "primary", type: "submit" }, "Draft version")));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const v = values(form);
    let doc;
    try { doc = JSON.parse(v.rules); } catch (err) {
      return showError(slot, { code: "bad_request", field: "rules", message: jsonProblem(v.rules, err) });
    }
    await busy(e.submitter, async () => {
      try {
        await api.command("policy.draft", { policy_id: policyId, rules: doc, notes: v.notes });
        ctx.refresh();
      } catch (err) {
        fill(slot, err.code === "invalid_rules" ? validationErrors(err, doc, rules) : errorBox(err));
      }
    });
  });
  return form;
}

/**
 * `invalid_rules`: each problem at its rule, line and column (of the expression), with the
 * expression and a caret, and the line of the document it is on; a click selects it there.
 */
function validationErrors(err, doc, textarea) {
  return h("div", { class: "error", role: "alert", dataset: { code: err.code } },
    h("code", {}, err.code), ": ", err.message,
    h("ul", {}, (err.details || []).map((d) => {
      const where = d.line ? `line ${d.line}, column ${d.column}` : null;
      const expr = lookup(doc, d.location);
      const at = typeof expr === "string" ? textarea.value.indexOf(JSON.stringify(expr)) : -1;
      const docLine = at >= 0 ? textarea.value.slice(0, at).split("\n").length : null;
      const select = () => {
        if (at < 0) return;
        textarea.focus();
        textarea.setSelectionRange(at + 1, at + JSON.stringify(expr).length - 1);
      };
      return h("li", { class: "problem", dataset: { line: d.line ?? "", column: d.column ?? "" }, onclick: select, title: "select it in the document" },
        h("code", {}, d.location || ""), where ? h("b", { class: "position" }, ` ${where}`) : null,
        docLine ? h("span", { class: "muted" }, ` (document line ${docLine})`) : null,
        ` — ${d.code}: ${d.message}`,
        typeof expr === "string" && d.line ? caret(expr, d.line, d.column) : null);
    })));
}

function lookup(doc, location) {
  if (!location) return undefined;
  let cur = doc;
  for (const part of location.replace(/\[(\d+)\]/g, ".$1").split(".").filter(Boolean)) {
    if (cur == null) return undefined;
    cur = cur[part];
  }
  return cur;
}

function caret(expr, line, column) {
  const text = expr.split("\n")[line - 1] ?? "";
  return h("pre", { class: "caret" }, `${text}\n${" ".repeat(Math.max(0, column - 1))}^`);
}

async function restore(ctx, policyId, v, latestVersion, button, slot) {
  const ok = await confirm({
    title: `Restore v${v.version}?`,
    message: `Drafts v${latestVersion + 1} of ${policyId} with the rules of v${v.version}. The active version does not change until a run of it is promoted.`,
    confirmLabel: "Restore",
  });
  if (!ok) return;
  await busy(button, async () => {
    try {
      await api.command("policy.restore", { policy_id: policyId, version: v.version, notes: `restore v${v.version}` });
      ctx.refresh();
    } catch (err) { showError(slot, err); }
  });
}

async function prepare(ctx, policyId, version, button, slot) {
  const stats = await api.query("catalog.stats").catch(() => null);
  const ok = await confirm({
    title: `Prepare v${version}?`,
    message: h("div", {},
      h("p", {}, `Evaluates v${version} of ${policyId} over a snapshot of the catalog's ready items`,
        stats ? ` (${stats.ready} now)` : "", ". Nothing changes for users until the run is promoted."),
      field("Batch size", h("input", { id: "batch-size", type: "number", min: 1, max: 20000, value: 1000 }))),
    confirmLabel: "Prepare",
  });
  if (!ok) return;
  const batch = Number(document.getElementById("batch-size")?.value || 1000);
  await busy(button, async () => {
    try {
      const r = await api.command("policy.prepare", { policy_id: policyId, version, batch_size: batch });
      ctx.navigate(`/console/runs/${encodeURIComponent(r.detail.run_id)}`);
    } catch (err) { showError(slot, err); }
  });
}
