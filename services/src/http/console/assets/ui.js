// Small DOM helpers shared by the pages: element builder, tables, badges, progress bars,
// refusals, confirmation dialogs. No framework: the pages build DOM nodes directly.

/** `h("a", {href: "/x", class: "c", onclick: fn}, "text", child...)`. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    // Through the CSSOM: the page's Content-Security-Policy refuses style attributes.
    else if (k === "style") el.style.cssText = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces `el`'s children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function link(href, text) {
  return h("a", { href, "data-link": "" }, text);
}

export function badge(text, kind = text) {
  return h("span", { class: `badge ${kind}` }, text);
}

export function time(iso) {
  if (!iso) return h("span", { class: "muted" }, "—");
  const d = new Date(iso);
  return h("time", { datetime: iso, title: iso }, d.toISOString().replace("T", " ").slice(0, 19) + " UTC");
}

/** A table: `cols` = [{label, num?}], `rows` = arrays of cells (or {cells, class}). */
export function table(cols, rows, empty = "Nothing yet.") {
  if (!rows.length) return h("p", { class: "muted" }, empty);
  return h("table", {},
    h("thead", {}, h("tr", {}, cols.map((c) => h("th", { class: c.num ? "num" : null }, c.label)))),
    h("tbody", {}, rows.map((r) => {
      const cells = Array.isArray(r) ? r : r.cells;
      return h("tr", { class: Array.isArray(r) ? null : r.class, dataset: r.dataset },
        cells.map((cell, i) => h("td", { class: cols[i] && cols[i].num ? "num" : null }, cell)));
    })));
}

export function progress(processed, total, status) {
  const pct = total > 0 ? Math.min(100, (100 * processed) / total) : status === "success" ? 100 : 0;
  const bar = h("div", {
    class: `progress ${status || ""}`, role: "progressbar",
    "aria-valuemin": "0", "aria-valuemax": String(total), "aria-valuenow": String(processed),
    title: `${processed} / ${total}`,
  }, h("span", { style: `width: ${pct.toFixed(1)}%` }));
  return bar;
}

export function kv(pairs) {
  return h("dl", { class: "kv" }, pairs.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v ?? "—")]));
}

export function json(value) {
  return h("pre", {}, JSON.stringify(value, null, 2));
}

/** A refusal as the user sees it: its code, message, field and details. */
export function errorBox(err) {
  const code = err.code || "internal";
  const box = h("div", { class: "error", role: "alert", dataset: { code } },
    h("code", {}, code), ": ", err.message || String(err));
  if (err.field) append(box, [h("div", { class: "muted" }, "field: ", h("code", {}, err.field))]);
  if (Array.isArray(err.details) && err.details.length && code !== "invalid_rules") {
    append(box, [h("ul", {}, err.details.map((d) => h("li", {}, h("code", {}, JSON.stringify(d)))))]);
  }
  return box;
}

/** Shows `err` in `slot` (or clears it when `err` is null). */
export function showError(slot, err) {
  if (!slot) return;
  fill(slot, err ? errorBox(err) : null);
}

/**
 * Asks for confirmation in a modal dialog stating `message` (a string or nodes). With
 * `reason`, a reason is required (`reason: "label"`). Resolves to `{reason}` or null.
 */
export function confirm({ title, message, confirmLabel = "Confirm", danger = false, reason = null }) {
  const dialog = document.getElementById("confirm");
  const reasonInput = reason ? h("textarea", { name: "reason", required: true, placeholder: "Why (recorded in the audit log)" }) : null;
  const ok = h("button", { class: danger ? "danger" : "primary", type: "submit", value: "ok" }, confirmLabel);
  const form = h("form", { method: "dialog" },
    h("h3", {}, title),
    h("div", {}, message),
    reasonInput ? h("label", { style: "margin-top: 12px" }, reason, reasonInput) : null,
    h("div", { class: "actions", style: "justify-content: flex-end; margin-top: 16px" },
      h("button", { type: "submit", value: "cancel", formnovalidate: true }, "Cancel"), ok));
  fill(dialog, form);
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      if (dialog.returnValue !== "ok") return resolve(null);
      resolve({ reason: reasonInput ? reasonInput.value.trim() : null });
    }, { once: true });
    dialog.returnValue = "";
    dialog.showModal();
    (reasonInput || ok).focus();
  });
}

/** A form's fields as an object of strings. */
export function values(form) {
  return Object.fromEntries(new FormData(form).entries());
}

export function field(label, input) {
  return h("label", {}, label, input);
}

/**
 * Wires `button` to an action: disables it while running, shows a refusal in `slot`, and
 * keeps the same idempotency key when the user retries after a failure that may have run
 * (no answer, `unavailable`, `conflict`).
 */
export async function busy(button, run) {
  if (button) button.disabled = true;
  try {
    return await run();
  } finally {
    if (button) button.disabled = false;
  }
}
