// cdrflow operator console: one script, no build step, no dependencies. Every page reads the
// services' REST APIs (the same ones curl uses) with the operator's token; nothing here reads a
// table. Data is put into the page as text nodes only (never parsed as markup).
"use strict";

const RANK = { read: 1, operate: 2, admin: 3 };
const state = {
  apis: { ingest: "", parser: "", billing: "", stats: "", recordings: "" },
  token: sessionStorage.getItem("cdrflow.token") || "",
  role: null, // "read" | "operate" | "admin"
  open: true, // no tokens configured: everything allowed
  live: null, // timer of the calls page's live mode
};

class ApiError extends Error {
  constructor(status, code, detail) {
    super(`${status} ${code}: ${detail}`);
    this.status = status;
    this.code = code;
    this.detail = detail;
  }
}

// -- DOM helpers ------------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function field(label, input) {
  const id = input.id || `f-${label.toLowerCase().replace(/[^a-z0-9]+/g, "-")}`;
  input.id = id;
  return h("div", { class: "field" }, h("label", { for: id }, label), input);
}

function table(columns, rows, attrs) {
  const head = h("tr", {}, columns.map(c => h("th", { scope: "col", class: c.num ? "num" : null }, c.label)));
  const body = rows.map(r => h("tr", {}, columns.map(c => h("td", { class: c.num ? "num" : null }, c.cell(r)))));
  return h("div", { class: "table-wrap" }, h("table", attrs || {}, h("thead", {}, head), h("tbody", {}, body)));
}

function say(text) {
  const status = document.getElementById("status");
  status.textContent = text;
  clearTimeout(say.timer);
  say.timer = setTimeout(() => { status.textContent = ""; }, 6000);
}

function errorBox(err) {
  const text = err instanceof ApiError ? `${err.status} ${err.code}: ${err.detail}` : String(err);
  return h("p", { class: "error", role: "alert" }, text);
}

function fmtTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
}

function fmtSeconds(s) {
  if (s === null || s === undefined) return "";
  const m = Math.floor(s / 60), r = s % 60;
  return m ? `${m}m${String(r).padStart(2, "0")}s` : `${r}s`;
}

// -- the APIs ---------------------------------------------------------------------------------

function authHeaders() {
  return state.token ? { Authorization: `Bearer ${state.token}` } : {};
}

async function api(service, path, options = {}) {
  const url = state.apis[service] + path;
  const init = { method: options.method || "GET", headers: { ...authHeaders() } };
  if (options.json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(options.json);
  }
  let resp;
  try {
    resp = await fetch(url, init);
  } catch (exc) {
    throw new ApiError(0, "unreachable", `${service} did not answer (${exc.message})`);
  }
  if (!resp.ok) {
    let code = "http_error", detail = resp.statusText;
    try { const body = await resp.json(); code = body.error || code; detail = body.detail || detail; } catch (_) { /* not JSON */ }
    if (resp.status === 401) signInNeeded(detail);
    throw new ApiError(resp.status, code, detail);
  }
  if (options.text) return resp.text();
  if (options.blob) return resp.blob();
  return resp.json();
}

function withToken(url) {
  if (!state.token) return url;
  return url + (url.includes("?") ? "&" : "?") + "access_token=" + encodeURIComponent(state.token);
}

function can(role) {
  return state.open || (state.role !== null && RANK[state.role] >= RANK[role]);
}

// -- sign-in ----------------------------------------------------------------------------------

async function whoami() {
  const resp = await fetch("/console/whoami", { headers: authHeaders() });
  if (resp.status === 401) {
    const body = await resp.json().catch(() => ({}));
    return { ok: false, detail: body.detail || "the token was not accepted" };
  }
  const body = await resp.json();
  return { ok: true, open: body.open, role: body.role };
}

async function refreshIdentity() {
  const who = await whoami();
  const label = document.getElementById("who");
  const out = document.getElementById("signout");
  if (!who.ok) {
    state.role = null;
    state.open = false;
    label.textContent = state.token ? "token not accepted" : "not signed in";
  } else {
    state.open = who.open;
    state.role = who.role;
    label.textContent = who.open ? "open access (no tokens configured)" : `signed in: ${who.role}`;
  }
  document.body.dataset.role = state.open ? "open" : (state.role || "none");
  out.hidden = !state.token;
}

function signInNeeded(detail) {
  const label = document.getElementById("who");
  label.textContent = state.token ? "token not accepted" : "sign in needed";
  say(`Sign in with an operator token: ${detail}`);
}

async function signIn(event) {
  event.preventDefault();
  const input = document.getElementById("token");
  state.token = input.value.trim();
  input.value = "";
  if (state.token) sessionStorage.setItem("cdrflow.token", state.token);
  else sessionStorage.removeItem("cdrflow.token");
  await refreshIdentity();
  if (state.token && state.role === null) say("That token was not accepted.");
  route();
}

async function signOut() {
  state.token = "";
  sessionStorage.removeItem("cdrflow.token");
  await refreshIdentity();
  route();
}

// -- routing ----------------------------------------------------------------------------------

function go(href) {
  history.pushState(null, "", href);
  route();
}

function page(title, ...content) {
  const main = document.getElementById("main");
  const heading = h("h1", { tabindex: "-1" }, title);
  main.replaceChildren(heading, ...content);
  document.title = `${title} · cdrflow`;
  return heading;
}

async function route() {
  if (state.live) { clearInterval(state.live); state.live = null; }
  const path = location.pathname;
  const section = path === "/" ? "calls" : path.split("/")[1];
  for (const a of document.querySelectorAll("nav a")) {
    if (a.dataset.nav === section) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const params = new URLSearchParams(location.search);
  let heading;
  if (path.startsWith("/calls/")) heading = await callPage(decodeURIComponent(path.slice(7)));
  else if (section === "calls") heading = await callsPage(params);
  else if (section === "bills") heading = await billsPage(params);
  else if (section === "dead-letters") heading = await deadLettersPage(params);
  else if (section === "devices") heading = await devicesPage();
  else if (section === "pexip") heading = await pexipPage();
  else if (section === "stats") heading = statsPage();
  else heading = page("Not found", h("p", {}, "No such page. ", h("a", { href: "/calls" }, "Calls")));
  if (route.moved && heading) heading.focus();
  route.moved = true;
  document.body.dataset.page = section;
}

document.addEventListener("click", event => {
  const a = event.target.closest("a");
  if (!a || a.target || a.hasAttribute("download") || event.ctrlKey || event.metaKey || event.shiftKey) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || url.pathname.startsWith("/v1/") || url.pathname.startsWith("/console/")) return;
  event.preventDefault();
  go(url.pathname + url.search);
});
window.addEventListener("popstate", route);

// -- Calls ------------------------------------------------------------------------------------

const CALL_FILTERS = ["number", "number_prefix", "account", "tenant", "carrier", "direction", "disposition", "source", "conference"];
const DISPOSITIONS = ["", "answered", "no_answer", "busy", "cancelled", "failed"];
const DIRECTIONS = ["", "inbound", "outbound", "internal"];

function localInput(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (isNaN(d)) return "";
  const pad = n => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function select(name, options, value) {
  return h("select", { name }, options.map(o => h("option", { value: o, selected: o === value }, o || "any")));
}

function callQuery(params) {
  const q = new URLSearchParams();
  for (const k of ["since", "until", ...CALL_FILTERS]) if (params.get(k)) q.set(k, params.get(k));
  return q;
}

async function callsPage(params) {
  const form = h("form", { class: "filters", role: "search", "aria-label": "Find calls" },
    field("From", h("input", { type: "datetime-local", name: "since", value: localInput(params.get("since")) })),
    field("To", h("input", { type: "datetime-local", name: "until", value: localInput(params.get("until")) })),
    field("Number (caller or callee; 5511* for a prefix)", h("input", { name: "number", id: "f-number",
      value: params.get("number") || (params.get("number_prefix") ? params.get("number_prefix") + "*" : ""), inputmode: "tel" })),
    field("Account", h("input", { name: "account", value: params.get("account") || "" })),
    field("Tenant", h("input", { name: "tenant", value: params.get("tenant") || "" })),
    field("Carrier", h("input", { name: "carrier", value: params.get("carrier") || "" })),
    field("Direction", select("direction", DIRECTIONS, params.get("direction") || "")),
    field("Disposition", select("disposition", DISPOSITIONS, params.get("disposition") || "")),
    field("Source", h("input", { name: "source", value: params.get("source") || "", placeholder: "freeswitch, hipath, pexip…" })),
    h("div", { class: "actions" },
      h("button", { type: "submit", id: "find" }, "Find calls"),
      h("button", { type: "button", class: "secondary", id: "csv", onclick: () => exportCsv(params) }, "Export CSV"),
      h("label", {}, h("input", { type: "checkbox", id: "live", checked: params.get("live") === "1" }), " live (refresh every 5 s)")));
  form.addEventListener("submit", event => {
    event.preventDefault();
    const data = new FormData(form);
    const q = new URLSearchParams();
    for (const [k, v] of data) {
      const text = String(v).trim();
      if (!text) continue;
      if (k === "number" && text.endsWith("*")) q.set("number_prefix", text.slice(0, -1));
      else q.set(k, k === "since" || k === "until" ? new Date(text).toISOString() : text);
    }
    const conference = new URLSearchParams(location.search).get("conference");
    if (conference) q.set("conference", conference);
    if (document.getElementById("live").checked) q.set("live", "1");
    go(`/calls?${q}`);
  });
  const results = h("div", { id: "results", "aria-live": "polite" }, h("p", { class: "dim" }, "Loading calls…"));
  const heading = page("Calls", form, results);
  form.querySelector("#live").addEventListener("change", event => {
    const q = new URLSearchParams(location.search);
    if (event.target.checked) q.set("live", "1"); else q.delete("live");
    q.delete("cursor");
    go(`/calls?${q}`);
  });
  await loadCalls(params, results);
  if (params.get("live") === "1" && !params.get("cursor")) {
    state.live = setInterval(() => loadCalls(params, results), 5000);
  }
  return heading;
}

async function loadCalls(params, results) {
  const q = callQuery(params);
  q.set("limit", "50");
  if (params.get("cursor")) q.set("cursor", params.get("cursor"));
  let body;
  try {
    body = await api("parser", `/v1/cdrs?${q}`);
  } catch (err) {
    results.replaceChildren(errorBox(err));
    return;
  }
  const columns = [
    { label: "Start", cell: r => fmtTime(r.start_time) },
    { label: "Caller", cell: r => r.caller_number || "" },
    { label: "Callee", cell: r => r.callee_number || "" },
    { label: "Direction", cell: r => r.direction || "" },
    { label: "Disposition", cell: r => r.disposition || "" },
    { label: "Billsec", num: true, cell: r => fmtSeconds(r.billsec_s) },
    { label: "Account", cell: r => r.account || "" },
    { label: "Carrier", cell: r => r.carrier || "" },
    { label: "Source", cell: r => r.source },
    { label: "Call", cell: r => h("a", { href: `/calls/${encodeURIComponent(r.call_id)}`, class: "call-link" }, r.call_id) },
  ];
  const pager = h("div", { class: "pager" });
  if (params.get("cursor")) pager.append(h("button", { type: "button", class: "secondary", onclick: () => history.back() }, "Previous page"));
  if (body.next_cursor) {
    const next = new URLSearchParams(location.search);
    next.set("cursor", body.next_cursor);
    next.delete("live");
    pager.append(h("a", { class: "button", href: `/calls?${next}`, id: "next-page" }, "Next page"));
  }
  const when = h("p", { class: "dim" }, `${body.items.length} call${body.items.length === 1 ? "" : "s"}` +
    (params.get("live") === "1" ? ` · live, updated ${new Date().toLocaleTimeString()}` : ""));
  results.replaceChildren(
    when,
    body.items.length ? table(columns, body.items, { id: "calls-table", "aria-label": "Calls" }) : h("p", { class: "notice" }, "No call matches."),
    pager);
}

async function exportCsv(params) {
  const q = callQuery(params);
  try {
    const blob = await api("parser", `/v1/cdrs.csv?${q}`, { blob: true });
    const a = h("a", { href: URL.createObjectURL(blob), download: "cdrs.csv" });
    document.body.append(a);
    a.click();
    a.remove();
    say("CSV exported.");
  } catch (err) {
    say(String(err.message || err));
  }
}

// -- Call detail ------------------------------------------------------------------------------

function settled(promise) {
  return promise.then(value => ({ value }), error => ({ error }));
}

async function callPage(callId) {
  const heading = page(`Call ${callId}`, h("p", { class: "dim" }, "Loading…"));
  const id = encodeURIComponent(callId);
  const [cdr, raw, charge, rec] = await Promise.all([
    settled(api("parser", `/v1/cdrs/${id}`)),
    settled(api("parser", `/v1/cdrs/${id}/raw`, { text: true })),
    settled(api("billing", `/v1/charges/${id}`)),
    settled(api("recordings", `/v1/recordings/${id}`)),
  ]);
  const main = document.getElementById("main");
  main.replaceChildren(heading);
  if (cdr.error) {
    main.append(errorBox(cdr.error));
    return heading;
  }
  const c = cdr.value;
  const links = [h("a", { href: `/calls?number=${encodeURIComponent(c.caller_number || c.callee_number || "")}` }, "Calls of this number")];
  if (c.other_leg_id) links.push(h("a", { href: `/calls/${encodeURIComponent(c.other_leg_id)}`, id: "other-leg" }, "Other leg"));
  const conference = c.extra && c.extra.conference_id;
  if (conference) {
    const label = c.extra.conference_name || conference;
    links.push(h("a", { href: `/calls?${new URLSearchParams({ conference: String(conference) })}`, id: "conference" }, `Conference ${label} (all participants)`));
  }
  main.append(h("p", { class: "links" }, links.flatMap((l, i) => (i ? [" · ", l] : [l]))));
  main.append(h("div", { class: "grid2" },
    h("section", { "aria-labelledby": "h-charge" }, h("h2", { id: "h-charge" }, "Charge"), chargeView(charge)),
    h("section", { "aria-labelledby": "h-recording" }, h("h2", { id: "h-recording" }, "Recording"), recordingView(rec))));
  const fields = Object.entries(c).filter(([k]) => k !== "extra");
  main.append(h("section", { "aria-labelledby": "h-fields" }, h("h2", { id: "h-fields" }, "Normalised fields"),
    h("dl", { class: "fields", id: "cdr-fields" }, fields.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v === null ? "—" : String(v))]))));
  if (c.extra && Object.keys(c.extra).length) {
    main.append(h("details", {}, h("summary", {}, "Extra fields"), h("pre", { class: "raw" }, JSON.stringify(c.extra, null, 2))));
  }
  main.append(h("section", { "aria-labelledby": "h-raw" }, h("h2", { id: "h-raw" }, "Raw document"),
    raw.error ? errorBox(raw.error) : h("pre", { class: "raw", id: "raw-document", tabindex: "0", "aria-label": "Raw document" }, pretty(raw.value))));
  return heading;
}

function pretty(text) {
  const t = text.trim();
  if (t.startsWith("{") || t.startsWith("[")) {
    try { return JSON.stringify(JSON.parse(t), null, 2); } catch (_) { return text; }
  }
  if (t.startsWith("<")) {
    const doc = new DOMParser().parseFromString(t, "application/xml");
    if (doc.getElementsByTagName("parsererror").length) return text;
    return xmlIndent(doc.documentElement, 0);
  }
  return text; // a serial line, a form body: as it came
}

function xmlIndent(node, depth) {
  const pad = "  ".repeat(depth);
  const attrs = [...node.attributes].map(a => ` ${a.name}="${a.value}"`).join("");
  const kids = [...node.childNodes].filter(n => n.nodeType === 1 || (n.nodeType === 3 && n.textContent.trim()));
  if (!kids.length) return `${pad}<${node.nodeName}${attrs}/>`;
  if (kids.length === 1 && kids[0].nodeType === 3) {
    return `${pad}<${node.nodeName}${attrs}>${kids[0].textContent.trim()}</${node.nodeName}>`;
  }
  const inner = kids.map(k => (k.nodeType === 1 ? xmlIndent(k, depth + 1) : "  ".repeat(depth + 1) + k.textContent.trim()));
  return `${pad}<${node.nodeName}${attrs}>\n${inner.join("\n")}\n${pad}</${node.nodeName}>`;
}

function chargeView(result) {
  if (result.error) {
    if (result.error.status === 404) return h("p", { class: "notice", id: "charge-missing" }, result.error.detail);
    return errorBox(result.error);
  }
  const ch = result.value, ex = ch.explanation || {};
  const out = h("div", { class: "card", id: "charge-explanation" });
  const badge = { priced: "ok", free: "ok", not_answered: "warn" }[ch.outcome] || "";
  out.append(h("p", {}, h("strong", { id: "charge-amount" }, `${ch.total} ${ch.currency}`), " ",
    h("span", { class: `badge ${badge}` }, ch.outcome)));
  if (ex.reason) out.append(h("p", { id: "charge-reason" }, ex.reason));
  const rows = [
    ["Tariff", `${ch.tariff.name} version ${ch.tariff.version}` + (ex.tariff ? ` (from ${fmtTime(ex.tariff.effective_from)}, ${ex.tariff.timezone})` : "")],
    ["Subscriber", ch.subscriber],
    ["Destination", ex.destination ? `${ex.destination.name || "?"} (prefix "${ex.destination.prefix}")` : (ch.destination || "")],
  ];
  if (ex.interval) rows.push(["Charged interval", `${fmtTime(ex.interval.begin)} → ${fmtTime(ex.interval.end)}, ${ex.interval.seconds} s` + (ex.interval.from ? ` from the ${ex.interval.from.replace("_", " ")}` : "")]);
  if (ex.increments) rows.push(["Increments", `first ${ex.increments.first_s} s, then ${ex.increments.next_s} s, rounded ${ex.increments.rounding}; price per ${ex.increments.unit_s} s. ${ex.increments.rule}`]);
  if (ex.standing_charge !== undefined) rows.push(["Standing charge", ex.standing_charge]);
  if (ex.usage !== undefined) rows.push(["Usage", ex.usage]);
  if (ex.minimum_charge !== undefined) rows.push(["Minimum charge", `${ex.minimum_charge}${ex.minimum_applied ? " (applied)" : ""}`]);
  rows.push(["Charge", `${ch.amount} ${ch.currency}`]);
  out.append(h("dl", { class: "fields" }, rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])));
  if (ex.bands && ex.bands.length) {
    out.append(h("h3", {}, "Bands"), table([
      { label: "Band", cell: b => b.band },
      { label: "Seconds", num: true, cell: b => b.seconds },
      { label: "Billed s", num: true, cell: b => b.billed_seconds },
      { label: "Increments", num: true, cell: b => b.cycles },
      { label: "Unit price", num: true, cell: b => b.unit_price },
      { label: "Amount", num: true, cell: b => b.amount },
    ], ex.bands, { id: "charge-bands", "aria-label": "Charge per band" }));
  }
  if (ex.segments && ex.segments.length > 1) {
    out.append(h("details", {}, h("summary", {}, "Band boundaries crossed"), table([
      { label: "Band", cell: s => s.band }, { label: "From", cell: s => s.start },
      { label: "To", cell: s => s.end }, { label: "Seconds", num: true, cell: s => s.seconds },
    ], ex.segments)));
  }
  if (ch.adjustments && ch.adjustments.length) {
    out.append(h("h3", {}, "Adjustments"), table([
      { label: "When", cell: a => fmtTime(a.created_at) },
      { label: "Amount", num: true, cell: a => a.amount },
      { label: "Reason", cell: a => a.reason },
    ], ch.adjustments, { id: "charge-adjustments" }));
  }
  return out;
}

function recordingView(result) {
  if (result.error) {
    if (result.error.status === 404) return h("p", { class: "notice", id: "recording-missing" }, "No recording for this call.");
    return errorBox(result.error);
  }
  const r = result.value;
  const src = withToken(state.apis.recordings + r.audio_url);
  const download = withToken(state.apis.recordings + r.audio_url + "?download=1");
  return h("div", { class: "card" },
    h("audio", { controls: true, preload: "metadata", src, id: "recording-audio", "aria-label": "Call recording" }),
    h("p", {}, h("a", { href: download, id: "recording-download", download: "" }, "Download"),
      ` · ${r.format || ""} · ${r.size} bytes · ${r.location}` + (r.state ? ` (${r.state})` : "")));
}

// -- Bills ------------------------------------------------------------------------------------

async function billsPage(params) {
  const subscriber = params.get("subscriber") || "";
  const period = params.get("period") || "current";
  const month = h("input", { type: "month", name: "month", value: period === "current" ? "" : period });
  const current = h("input", { type: "checkbox", name: "current", id: "f-current", checked: period === "current" });
  const form = h("form", { class: "filters", "aria-label": "Bill" },
    field("Subscriber (account or number)", h("input", { name: "subscriber", id: "f-subscriber", value: subscriber, required: true })),
    field("Month", month),
    h("div", { class: "field" }, h("label", { for: "f-current" }, "Current month (provisional)"), current),
    h("div", { class: "actions" }, h("button", { type: "submit", id: "show-bill" }, "Show bill")));
  form.addEventListener("submit", event => {
    event.preventDefault();
    const q = new URLSearchParams({ subscriber: form.subscriber.value.trim(), period: current.checked || !month.value ? "current" : month.value });
    go(`/bills?${q}`);
  });
  const out = h("div", { id: "bill" });
  const heading = page("Bills", form, out);
  if (!subscriber) return heading;
  let bill;
  try {
    bill = await api("billing", `/v1/bills/${encodeURIComponent(subscriber)}?${new URLSearchParams({ period })}`);
  } catch (err) {
    out.replaceChildren(errorBox(err));
    return heading;
  }
  const lines = bill.calls.map(c => ({ ...c, kind: "call" }));
  out.replaceChildren(
    h("h2", {}, `${bill.subscriber} · ${bill.period} `,
      bill.provisional ? h("span", { class: "badge warn", id: "provisional" }, `provisional, as of ${fmtTime(bill.as_of)}`) : h("span", { class: "badge ok" }, "closed")),
    h("p", { class: "dim" }, `Times in ${bill.timezone}; a call is on the bill of the month it ended in.`),
    lines.length ? table([
      { label: "Date", cell: c => c.start_date },
      { label: "Time", cell: c => c.start_time },
      { label: "Destination", cell: c => c.destination || "" },
      { label: "Duration", cell: c => c.duration },
      { label: "Price", num: true, cell: c => c.price },
      { label: "Call", cell: c => h("a", { href: `/calls/${encodeURIComponent(c.call_id)}` }, "details") },
    ], lines, { id: "bill-lines", "aria-label": "Calls on the bill" }) : h("p", { class: "notice" }, "No charged call in this month."),
    bill.adjustments.length ? h("div", {}, h("h3", {}, "Adjustments"), table([
      { label: "Call", cell: a => a.call_id },
      { label: "Reason", cell: a => a.reason },
      { label: "Price", num: true, cell: a => a.price },
    ], bill.adjustments)) : "",
    h("p", { class: "total" }, "Total: ", h("strong", { id: "bill-total", dataset: { amount: bill.total } }, bill.total_price)));
  return heading;
}

// -- Dead letters -----------------------------------------------------------------------------

async function deadLettersPage(params) {
  const out = h("div", { id: "letters" }, h("p", { class: "dim" }, "Loading…"));
  const heading = page("Dead letters", h("p", { class: "dim" },
    "Records that were accepted but could not be processed, with the reason. Retry publishes one again once its cause is fixed."), out);
  const q = new URLSearchParams({ limit: "50" });
  if (params.get("cursor")) q.set("cursor", params.get("cursor"));
  let body;
  try {
    body = await api("parser", `/v1/dead-letters?${q}`);
  } catch (err) {
    out.replaceChildren(errorBox(err));
    return heading;
  }
  if (!body.items.length) {
    out.replaceChildren(h("p", { class: "notice" }, "No dead letters."));
    return heading;
  }
  const operate = can("operate");
  const columns = [
    { label: "Id", num: true, cell: d => d.id },
    { label: "Stage", cell: d => d.stage },
    { label: "Error", cell: d => d.error },
    { label: "Reason", cell: d => h("span", { class: "reason" }, d.reason) },
    { label: "Failed", cell: d => fmtTime(d.last_failed_at || d.created_at) },
    { label: "Retries", num: true, cell: d => d.retry_count || 0 },
    { label: "Raw", cell: d => h("details", {}, h("summary", {}, "view"), h("pre", { class: "raw" }, d.envelope ? JSON.stringify(d.envelope, null, 2) : (d.raw_value || ""))) },
  ];
  if (operate) {
    columns.push({ label: "Action", cell: d => h("button", { type: "button", class: "retry", dataset: { id: d.id }, onclick: () => retry(d.id) }, "Retry") });
  }
  const pager = h("div", { class: "pager" });
  if (body.next_cursor) pager.append(h("a", { class: "button", href: `/dead-letters?cursor=${encodeURIComponent(body.next_cursor)}` }, "Older"));
  out.replaceChildren(table(columns, body.items, { id: "letters-table", "aria-label": "Dead letters" }), pager);
  return heading;
}

async function retry(id) {
  const box = document.getElementById("letters") || document.getElementById("main");
  try {
    const row = await api("parser", `/v1/dead-letters/${id}/retry`, { method: "POST" });
    say(`Dead letter ${id} published again (retried ${row.retry_count || 1} time(s)).`);
    route();
  } catch (err) {
    const shown = errorBox(err);
    shown.id = "write-error";
    box.prepend(shown);
    say(err.message);
  }
}

// -- Edge devices and Pexip pulls -------------------------------------------------------------

const STALE_S = 300;

function ageSeconds(iso) {
  const t = Date.parse(iso);
  return isNaN(t) ? null : Math.round((Date.now() - t) / 1000);
}

async function listPage(title, service, path, intro, missing, chosen) {
  const out = h("div", {}, h("p", { class: "dim" }, "Loading…"));
  const heading = page(title, h("p", { class: "dim" }, intro), out);
  let body;
  try {
    body = await api(service, path);
  } catch (err) {
    if (err.status === 404 || err.status === 405) out.replaceChildren(h("p", { class: "notice", id: "not-available" }, missing));
    else out.replaceChildren(errorBox(err));
    return heading;
  }
  const items = Array.isArray(body) ? body : (body.items || []);
  if (!items.length) {
    out.replaceChildren(h("p", { class: "notice" }, "Nothing reported yet."));
    return heading;
  }
  const keys = chosen || [...new Set(items.flatMap(i => Object.keys(i)))].filter(k => k !== "stale" && (typeof items[0][k] !== "object" || items[0][k] === null));
  const seenKey = keys.find(k => /last_(seen|checkin|pull|success)|_at$/.test(k));
  const columns = keys.map(k => ({ label: k.replace(/_/g, " "), cell: i => (i[k] === null || i[k] === undefined ? "" : String(i[k])) }));
  columns.push({ label: "State", cell: i => {
    const age = seenKey ? ageSeconds(i[seenKey]) : null;
    // The service's own verdict when it gives one (it knows each device's check-in interval).
    const stale = typeof i.stale === "boolean" ? i.stale : age !== null && age > STALE_S;
    return h("span", { class: `badge ${stale ? "bad" : "ok"}` }, stale ? `stale${age !== null ? ` (${fmtSeconds(age)} ago)` : ""}` : "ok");
  } });
  out.replaceChildren(table(columns, items, { "aria-label": title }));
  return heading;
}

function devicesPage() {
  return listPage("Edge devices", "parser", "/v1/edge/devices",
    "Edge agents reading serial PBXs: when each last checked in, its queue, and a warning once it missed two check-ins.",
    "No edge device registry in this deployment (GET /v1/edge/devices is not available).",
    ["device", "last_seen", "version", "source", "source_state", "source_error", "queue_depth", "queue_full",
      "oldest_age_s", "rejected", "last_line_at", "remote_addr"]);
}

function pexipPage() {
  return listPage("Pexip pulls", "ingest", "/v1/pexip/pulls",
    "Pexip history pulls: the last completed pull of each Management Node, what it brought, and a warning once two scheduled pulls were missed.",
    "No Pexip puller in this deployment (GET /v1/pexip/pulls is not available).",
    ["node", "finished", "since", "until", "checkpoint", "conferences", "participants", "posted", "cron", "warnings"]);
}

// -- Stats ------------------------------------------------------------------------------------

function statsPage() {
  return page("Stats", h("iframe", { class: "stats", src: `${state.apis.stats}/dashboard`, title: "Live 6-minute statistics and alerts" }));
}

// -- start ------------------------------------------------------------------------------------

async function start() {
  try {
    const cfg = await (await fetch("/console/config.json")).json();
    Object.assign(state.apis, cfg.apis || {});
  } catch (_) { /* same origin */ }
  document.getElementById("signin").addEventListener("submit", signIn);
  document.getElementById("signout").addEventListener("click", signOut);
  await refreshIdentity();
  if (location.pathname === "/") history.replaceState(null, "", "/calls" + location.search);
  await route();
  document.body.dataset.ready = "1";
}

window.cdrflow = { state, api, retry, go };
start();
