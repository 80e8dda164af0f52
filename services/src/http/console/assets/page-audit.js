// Audit: the event log with filters (aggregate, id, actor, event type, time), each event's
// payload on demand; refused requests (denials) beside it.

import * as api from "./api.js";
import { h, fill, time, table, json, errorBox, field } from "./ui.js";

const FILTERS = ["aggregate", "aggregate_id", "actor", "event_type", "since", "until"];

export async function list(ctx, view) {
  const params = new URLSearchParams(location.search);
  const filter = { limit: 500 };
  for (const k of FILTERS) if (params.get(k)) filter[k] = params.get(k);
  const inputs = Object.fromEntries(FILTERS.map((k) => [k, h("input", {
    name: k, value: params.get(k) || "",
    placeholder: k === "since" || k === "until" ? "2026-12-05T00:00:00Z" : "any",
  })]));
  const form = h("form", { class: "row card", id: "audit-filter" },
    field("Aggregate", inputs.aggregate), field("Aggregate id", inputs.aggregate_id), field("Actor", inputs.actor),
    field("Event type", inputs.event_type), field("Since", inputs.since), field("Until", inputs.until),
    h("button", { type: "submit" }, "Filter"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    for (const k of FILTERS) if (inputs[k].value.trim()) q.set(k, inputs[k].value.trim());
    ctx.navigate(`/console/audit${q.toString() ? `?${q}` : ""}`);
  });
  const results = h("div", { id: "audit-results" });
  fill(view, h("h1", {}, "Audit log"), form, results);
  let entries = [];
  const more = h("button", { id: "more" }, "Load newer events");
  const load = async () => {
    try {
      const page = await api.query("audit.log", entries.length ? { ...filter, after_position: entries[entries.length - 1].position } : filter);
      entries = entries.concat(page);
      render(page.length === filter.limit);
    } catch (e) { fill(results, errorBox(e)); }
  };
  more.addEventListener("click", load);
  const render = (hasMore) => {
    const rows = entries.slice().reverse().map((e) => ({
      dataset: { type: e.event_type, actor: e.actor },
      cells: [String(e.position), time(e.recorded_at),
        h("span", {}, e.actor, e.delegated_by ? h("span", { class: "muted" }, ` via ${e.delegated_by}`) : null),
        h("span", {}, `${e.aggregate}/`, h("b", {}, e.aggregate_id), ` #${e.sequence}`),
        h("details", {}, h("summary", {}, h("code", {}, e.event_type)), json(e.payload),
          h("div", { class: "muted" }, `command ${e.command_id} · correlation ${e.correlation_id}`))],
    }));
    fill(results,
      h("p", { class: "muted" }, `${entries.length} event(s), newest first`),
      table([{ label: "#", num: true }, { label: "Recorded" }, { label: "Actor" }, { label: "Aggregate" }, { label: "Event" }], rows, "No event matches."),
      hasMore ? more : null);
  };
  await load();
}
