// The console's client for Gatehouse's public HTTP API: the generic command and query routes
// and a run's server-sent events. Every failure is an ApiError carrying the JSON error body.

const TOKEN_KEY = "gatehouse.token";

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set: (value) => sessionStorage.setItem(TOKEN_KEY, value),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

/** A refusal: `code`, `message`, and `field` / `details` when the server gave them. */
export class ApiError extends Error {
  constructor(status, body) {
    super(body.message || `HTTP ${status}`);
    this.status = status;
    this.code = body.code || "internal";
    this.field = body.field;
    this.details = body.details;
  }
}

function headers(extra = {}) {
  const h = { "Content-Type": "application/json", ...extra };
  const t = token.get();
  if (t) h.Authorization = `Bearer ${t}`;
  return h;
}

async function send(path, body, extra) {
  let response;
  try {
    response = await fetch(path, { method: "POST", headers: headers(extra), body: JSON.stringify(body ?? {}) });
  } catch (e) {
    throw new ApiError(0, { code: "unavailable", message: `Gatehouse cannot be reached: ${e.message}` });
  }
  const text = await response.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  if (!response.ok) {
    throw new ApiError(response.status, json || { code: "internal", message: text.slice(0, 300) });
  }
  return json;
}

// Read-your-writes: the last command this page had accepted. A query whose read model follows
// that aggregate carries `wait_for`, so a page shown after an action already reflects it.
let lastWrite = null;

function follows(op, aggregate) {
  const context = op.split(".")[0];
  if (op === "audit.log" || op === "audit.replay") return true;
  if (context === "policy" || context === "run" || op === "catalog.public") return aggregate === "policy";
  if (["repo", "quarantine"].includes(context) || op === "decision.list") return aggregate === "repo" || aggregate === "artifact";
  if (["flag.get", "flag.list", "flag.history", "global.get"].includes(op)) return aggregate === "flag" || aggregate === "global";
  return false;
}

/** `POST /v1/queries/<op>` (waiting for this page's last command when the query reads it). */
export function query(op, body = {}) {
  if (lastWrite && follows(op, lastWrite.aggregate)) body = { ...body, wait_for: lastWrite };
  return send(`/v1/queries/${op}`, body);
}

/** A fresh idempotency key (crypto.randomUUID where the page is a secure context). */
export function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** Who the token belongs to and the roles they hold. */
export function whoami() {
  return query("access.whoami");
}

/**
 * Follows a run's server-sent events (`GET /v1/runs/{id}/events`, read with fetch because
 * EventSource cannot send the token): calls `onView(view, ended)` for each view; reopens the
 * stream when the server closes it while the run still runs. Returns a function that stops.
 */
export function followRun(runId, onView, onError) {
  const controller = new AbortController();
  let stopped = false;
  (async () => {
    while (!stopped) {
      let ended = false;
      try {
        const response = await fetch(`/v1/runs/${encodeURIComponent(runId)}/events`, {
          headers: headers({ Accept: "text/event-stream" }),
          signal: controller.signal,
        });
        if (!response.ok) {
          const body = await response.json().catch(() => ({ code: "internal", message: `HTTP ${response.status}` }));
          throw new ApiError(response.status, body);
        }
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, cut);
            buffer = buffer.slice(cut + 2);
            const event = parseEvent(block);
            if (!event) continue;
            if (event.name === "error") throw new ApiError(500, JSON.parse(event.data));
            ended = event.name === "end";
            onView(JSON.parse(event.data), ended);
          }
        }
      } catch (e) {
        if (stopped) return;
        if (onError) onError(e instanceof ApiError ? e : new ApiError(0, { code: "unavailable", message: e.message }));
        return;
      }
      if (ended) return;
      await new Promise((r) => setTimeout(r, 500));
    }
  })();
  return () => { stopped = true; controller.abort(); };
}

function parseEvent(block) {
  let name = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue;
    if (line.startsWith("event:")) name = line.slice(6).trim();
    else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
  }
  return data.length ? { name, data: data.join("\n") } : null;
}

// The keys of actions whose outcome is unknown (no answer, `unavailable`, `conflict`): sending
// the same command again is a retry of that action and reuses its key.
const unsettled = new Map();
const RETRYABLE = new Set(["unavailable", "conflict", "internal"]);

/**
 * Sends command `op` with `body` as one user action: a fresh Idempotency-Key, or the key of
 * the same command whose previous attempt may have run (so a retry never runs it twice).
 */
export async function command(op, body) {
  const id = `${op} ${JSON.stringify(body)}`;
  const key = unsettled.get(id) || newKey();
  unsettled.set(id, key);
  try {
    const result = await send(`/v1/commands/${op}`, body, { "Idempotency-Key": key });
    unsettled.delete(id);
    const accepted = (result && result.recorded) || result;
    if (accepted && accepted.aggregate && accepted.sequence) {
      lastWrite = { aggregate: accepted.aggregate, aggregate_id: accepted.aggregate_id, sequence: accepted.sequence };
    }
    return result;
  } catch (e) {
    if (!(e instanceof ApiError) || !RETRYABLE.has(e.code)) unsettled.delete(id);
    throw e;
  }
}
