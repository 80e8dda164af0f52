// Flags and rollouts: every flag with its percentage and strategy, safe mode; a flag's
// rollout history and outcome stats; set the rollout; emergency stop / resume and safe mode
// behind a confirmation.

import * as api from "./api.js";
import { h, fill, link, badge, time, table, kv, showError, values, field, busy, confirm } from "./ui.js";

const STRATEGIES = ["percentage", "whitelist", "rule", "category"];

function state(f) {
  if (f.archived) return badge("archived");
  if (f.emergency_stop) return badge("stopped");
  return badge("active");
}

export async function list(ctx, view) {
  const [flags, safe] = await Promise.all([api.query("flag.list", { include_archived: true }), api.query("global.get")]);
  const slot = h("div", { id: "flags-errors" });
  const rows = flags.map((f) => ({
    dataset: { flag: f.flag },
    cells: [link(`/console/flags/${encodeURIComponent(f.flag)}`, f.flag), f.type, `${f.rollout.percentage}%`, f.rollout.strategy, state(f),
      h("span", {}, time(f.updated_at), " by ", f.updated_by)],
  }));
  fill(view,
    h("h1", {}, "Flags and rollouts"),
    h("div", { class: "card row", id: "safe-mode", style: "align-items: center" },
      h("div", { class: "grow" }, h("b", {}, "Safe mode: "), safe.on ? badge("on", "bad") : badge("off", "idle"),
        safe.changed_by ? h("span", { class: "muted" }, ` — ${safe.on ? "turned on" : "turned off"} by ${safe.changed_by}: ${safe.reason || ""}`) : null,
        h("div", { class: "muted" }, "While on, every flag answers its off value.")),
      ctx.can("operator") ? h("button", { id: "safe-mode-toggle", class: safe.on ? "primary" : "danger", onclick: (e) => safeMode(ctx, !safe.on, e.target, slot) },
        safe.on ? "Turn safe mode off" : "Turn safe mode on") : null),
    slot,
    table([{ label: "Flag" }, { label: "Type" }, { label: "Rollout", num: true }, { label: "Strategy" }, { label: "State" }, { label: "Updated" }], rows, "No flag yet."),
    ctx.can("author") ? createForm(ctx) : null);
}

async function safeMode(ctx, on, button, slot) {
  const ok = await confirm({
    title: on ? "Turn safe mode on?" : "Turn safe mode off?",
    message: on ? "Every flag answers its off value at once, for every service, until safe mode is turned off." : "Every flag answers by its own rollout again.",
    confirmLabel: on ? "Turn on" : "Turn off", danger: on, reason: "Reason (required)",
  });
  if (!ok) return;
  await busy(button, async () => {
    try { await api.command("global.safe_mode", { on, reason: ok.reason }); ctx.refresh(); } catch (err) { showError(slot, err); }
  });
}

function createForm(ctx) {
  const slot = h("div");
  const form = h("form", { class: "card", id: "create-flag" },
    h("h2", { style: "margin-top: 0" }, "New flag"),
    h("div", { class: "row" },
      field("Key", h("input", { name: "flag", required: true, placeholder: "checkout.new-flow" })),
      h("div", { class: "grow" }, field("Description", h("input", { name: "description", style: "width: 100%" })))),
    slot,
    h("div", { class: "actions" }, h("button", { class: "primary", type: "submit" }, "Create flag (boolean, at 0%)")));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const v = values(form);
    await busy(e.submitter, async () => {
      try {
        await api.command("flag.create", { flag: v.flag, description: v.description, type: "boolean" });
        ctx.navigate(`/console/flags/${encodeURIComponent(v.flag)}`);
      } catch (err) { showError(slot, err); }
    });
  });
  return form;
}

export async function show(ctx, view, key) {
  const [f, history, stats] = await Promise.all([
    api.query("flag.get", { flag: key }),
    api.query("flag.history", { flag: key, limit: 100 }),
    api.query("flag.stats", { flag: key, limit: 20 }),
  ]);
  const slot = h("div", { id: "flag-errors" });
  const r = f.rollout;
  fill(view,
    h("div", { class: "crumbs" }, link("/console/flags", "Flags"), ` / ${key}`),
    h("h1", {}, key, " ", state(f)),
    slot,
    h("div", { class: "card" }, kv([
      ["Description", f.description || "—"],
      ["Rollout", h("b", { id: "percentage" }, `${r.percentage}%`)],
      ["Strategy", h("span", { id: "strategy" }, r.strategy)],
      r.include && r.include.length ? ["Include", r.include.join(", ")] : null,
      r.categories && r.categories.length ? ["Categories", r.categories.join(", ")] : null,
      r.rule ? ["Rule", h("code", {}, r.rule)] : null,
      ["Values", h("span", {}, "on ", h("code", {}, JSON.stringify(f.on_value)), ", off ", h("code", {}, JSON.stringify(f.off_value)))],
      f.emergency_stop ? ["Emergency stop", h("span", { class: "badge stopped" }, f.emergency_stop)] : null,
      ["Updated", h("span", {}, time(f.updated_at), " by ", f.updated_by)],
    ].filter(Boolean)),
    ctx.can("operator") && !f.archived ? h("div", { class: "actions" },
      f.emergency_stop
        ? h("button", { id: "resume", class: "primary", onclick: (e) => stopOrResume(ctx, f, false, e.target, slot) }, "Resume")
        : h("button", { id: "emergency-stop", class: "danger", onclick: (e) => stopOrResume(ctx, f, true, e.target, slot) }, "Emergency stop")) : null),
    ctx.can("operator") && !f.archived ? rolloutForm(ctx, f, slot) : null,
    h("h2", {}, "Rollout history"),
    table([{ label: "When" }, { label: "Change" }, { label: "Rollout" }, { label: "Strategy" }, { label: "By" }, { label: "Trigger" }, { label: "Reason" }],
      history.map((c) => [time(c.at), badge(c.change, "info"),
        c.percentage !== undefined && c.percentage !== null ? `${c.previous_percentage ?? "—"}% → ${c.percentage}%` : "—",
        c.strategy || "—", c.actor, c.triggered_by, c.reason]), "No change yet."),
    h("h2", {}, "Outcome stats"),
    table([{ label: "Window" }, { label: "Total", num: true }, { label: "Successes", num: true }, { label: "Errors", num: true },
      { label: "Error rate", num: true }, { label: "Avg ms", num: true }],
    stats.map((s) => [time(s.window_start), String(s.total), String(s.successes), String(s.errors),
      `${(s.error_rate * 100).toFixed(2)}%`, s.avg_duration_ms == null ? "—" : Number(s.avg_duration_ms).toFixed(1)]), "No outcome reported yet."));
}

function rolloutForm(ctx, f, slot) {
  const r = f.rollout;
  const form = h("form", { class: "card", id: "rollout" },
    h("h2", { style: "margin-top: 0" }, "Set the rollout"),
    h("div", { class: "row" },
      field("Percentage", h("input", { name: "percentage", id: "rollout-percentage", type: "number", min: 0, max: 100, step: "0.01", value: r.percentage, required: true })),
      field("Strategy", h("select", { name: "strategy" }, STRATEGIES.map((s) => h("option", { value: s, selected: s === r.strategy }, s)))),
      field("Include (comma-separated units)", h("input", { name: "include", value: (r.include || []).join(",") })),
      field("Categories", h("input", { name: "categories", value: (r.categories || []).join(","), placeholder: "test,small" })),
      field("Rule (CEL, strategy rule)", h("input", { name: "rule", value: r.rule || "", placeholder: "plan == \"pro\"" })),
      field("Rule attributes (JSON)", h("input", { name: "rule_attributes", value: r.rule_attributes ? JSON.stringify(r.rule_attributes) : "", placeholder: "{\"plan\": \"string\"}" })),
      h("div", { class: "grow" }, field("Reason", h("input", { name: "reason", id: "rollout-reason", required: true, style: "width: 100%" })))),
    h("div", { class: "actions" }, h("button", { class: "primary", type: "submit" }, "Set rollout")));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const v = values(form);
    const list = (s) => s.split(",").map((x) => x.trim()).filter(Boolean);
    const body = { flag: f.flag, percentage: Number(v.percentage), strategy: v.strategy, reason: v.reason };
    if (list(v.include).length) body.include = list(v.include);
    if (list(v.categories).length) body.categories = list(v.categories);
    if (v.rule.trim()) body.rule = v.rule.trim();
    if (v.rule_attributes.trim()) {
      try { body.rule_attributes = JSON.parse(v.rule_attributes); } catch (err) {
        return showError(slot, { code: "bad_request", field: "rule_attributes", message: `not JSON: ${err.message}` });
      }
    }
    const ok = await confirm({
      title: `Set ${f.flag} to ${body.percentage}%?`,
      message: `The rollout of ${f.flag} goes from ${r.percentage}% (${r.strategy}) to ${body.percentage}% (${body.strategy}) for every service at once.`,
      confirmLabel: "Set rollout",
    });
    if (!ok) return;
    await busy(e.submitter, async () => {
      try { await api.command("flag.set_rollout", body); ctx.refresh(); } catch (err) { showError(slot, err); }
    });
  });
  return form;
}

async function stopOrResume(ctx, f, stop, button, slot) {
  const ok = await confirm({
    title: stop ? `Emergency-stop ${f.flag}?` : `Resume ${f.flag}?`,
    message: stop
      ? `${f.flag} answers its off value to everyone at once (now ${f.rollout.percentage}% on), until resumed.`
      : `${f.flag} answers by its rollout again (${f.rollout.percentage}%, ${f.rollout.strategy}).`,
    confirmLabel: stop ? "Emergency stop" : "Resume", danger: stop, reason: "Reason (required)",
  });
  if (!ok) return;
  await busy(button, async () => {
    try {
      await api.command(stop ? "flag.emergency_stop" : "flag.resume", { flag: f.flag, reason: ok.reason });
      ctx.refresh();
    } catch (err) { showError(slot, err); }
  });
}
