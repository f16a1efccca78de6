// evalx view: the requests of one run (or two, paired) and the timeline of one request.
// Vanilla JS, no network but the viewer's own server. Every text from a run enters the
// page through text nodes (el(), textContent), never as markup.
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("evalx-data").textContent);
  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "data") for (const [dk, dv] of Object.entries(v)) node.dataset[dk] = String(dv);
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  // ------------------------------------------------------------------ formatting
  const nf1 = new Intl.NumberFormat("en-US", { minimumFractionDigits: 1, maximumFractionDigits: 1 });
  const nf0 = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
  const fmtMs = (v) => (v === null || v === undefined ? "–" : nf1.format(v) + " ms");
  const fmtNum1 = (v) => (v === null || v === undefined ? "–" : nf1.format(v));
  const fmtInt = (v) => (v === null || v === undefined ? "–" : nf0.format(v));
  const fmtCost = (v) => (v === null || v === undefined ? "–" : v.toFixed(v >= 1 ? 2 : 6));
  const fmtS = (v) => (v === null || v === undefined ? "–" : v.toFixed(3));
  const words = (s) => String(s || "").replace(/_/g, " ");

  // ------------------------------------------------------------------ the data
  function decode(column, n) {
    if (column && !Array.isArray(column)) {
      if ("fill" in column) return new Array(n).fill(column.fill);
      const d = column.dict;
      return column.codes.map((c) => d[c]);
    }
    return column;
  }
  const RUNS = DATA.runs.map((info, r) => {
    const cols = {}, n = info.rows.n;
    for (const [name, column] of Object.entries(info.rows.columns)) cols[name] = decode(column, n);
    // row numbers in the run's requests table (null: every row, in order)
    const rowOf = info.rows.row || null;
    return { r, info, n, row: (i) => (rowOf ? rowOf[i] : i), cols, cache: {} };
  });
  const PAIR = DATA.pairing || null;
  const PAIRED = !!(PAIR && PAIR.paired);
  const CHANGED = PAIRED ? PAIR.changed : [];
  const WHAT = PAIRED ? PAIR.what : [];
  const SIDE = RUNS.length === 2 ? ["baseline", "candidate"] : ["run"];
  const ASSERTS = Object.keys(RUNS[0].cols).filter((c) => c.startsWith("assert"));

  const state = {
    tab: PAIRED ? "changed" : "run0",
    filters: { route: "", outcome: "", phase: "", tenant: "", task_class: "", q: "", violations: false },
    sort: { key: "request_id", dir: 1 },
    page: 0,
    pageSize: 500,
    selected: null,
  };

  // ------------------------------------------------------------------ header, tabs, notes
  function renderHead() {
    const head = $("head");
    head.append(el("h1", {}, "evalx view"));
    RUNS.forEach((run, r) => {
      const i = run.info;
      head.append(
        el("p", { class: "run-info" },
          RUNS.length === 2 ? el("b", {}, SIDE[r] + ": ") : null,
          el("code", {}, i.path), " · suite ", el("b", {}, String(i.suite)), " · seed ", String(i.seed),
          " · ", fmtInt(i.requests), " requests · policy ", String(i.policy),
          " · run ", String(i.run_id))
      );
    });
    const notes = $("notes");
    const note = (text, cls) => notes.append(el("p", { class: "note " + (cls || "") }, text));
    if (PAIR) {
      if (PAIRED) note(`Paired request by request: ${fmtInt(CHANGED.length)} of ${fmtInt(PAIR.requests)} requests changed outcome (success flipped, outcome or route changed).`);
      else note(`Not paired (${PAIR.problem}): each run is shown on its own tab; no request-by-request changes.`, "warn");
    }
    RUNS.forEach((run, r) => {
      const prefix = RUNS.length === 2 ? SIDE[r] + ": " : "";
      if (run.info.rows_note) note(prefix + run.info.rows_note, "warn");
      if (run.info.details_note) note(prefix + run.info.details_note);
      if (!run.info.text_retained) note(prefix + "prompt and answer text not retained (the run's policy has retention.store_text off; re-run with --set policies.retention.store_text=true to keep them, redacted).");
      if (!run.info.has_spans) note(prefix + "this run has no spans.parquet: no timelines.", "warn");
    });
    if (RUNS.length === 2) {
      const tabs = $("tabs");
      tabs.hidden = false;
      const tab = (id, label, disabled, title) =>
        el("button", { type: "button", role: "tab", id: "tab-" + id, "aria-selected": String(state.tab === id),
          disabled, title, onclick: () => { state.tab = id; state.page = 0; state.selected = null; renderTabs(); render(); clearDetail(); } }, label);
      tabs.append(
        tab("changed", `Changed (${fmtInt(CHANGED.length)})`, !PAIRED, PAIRED ? null : "not paired: " + PAIR.problem),
        tab("run0", "Baseline: " + RUNS[0].info.name),
        tab("run1", "Candidate: " + RUNS[1].info.name)
      );
    }
  }
  function renderTabs() {
    for (const b of $("tabs").querySelectorAll("button")) b.setAttribute("aria-selected", String(b.id === "tab-" + state.tab));
  }

  // ------------------------------------------------------------------ columns
  const numCol = (key, label, get, fmt) => ({ key, label, num: true, get, text: (i) => fmt(get(i)) });
  const strCol = (key, label, get, cls) => ({ key, label, num: false, get, text: get, cls });

  function runColumns(run) {
    const c = run.cols;
    const cols = [numCol("request_id", "id", (i) => c.request_id[i], String)];
    if (c.replication) cols.push(numCol("replication", "rep", (i) => c.replication[i], String));
    if (c.source_id) cols.push(strCol("source_id", "source id", (i) => c.source_id[i]));
    cols.push(numCol("arrival_s", "arrival s", (i) => c.arrival_s[i], fmtS));
    if (c.tenant && c.tenant.some((t) => t)) cols.push(strCol("tenant", "tenant", (i) => c.tenant[i]));
    cols.push(
      strCol("task_class", "class", (i) => c.task_class[i]),
      strCol("route", "route", (i) => c.route[i]),
      strCol("served_by", "served by", (i) => c.served_by[i]),
      strCol("outcome", "outcome", (i) => c.outcome[i], (i) => "outcome o-" + c.outcome[i]),
      strCol("phase", "phase", (i) => c.phase[i]),
      numCol("latency_ms", "latency ms", (i) => c.latency_ms[i], fmtNum1),
      numCol("cost_usd", "cost $", (i) => c.cost_usd[i], fmtCost),
      numCol("retries", "retries", (i) => c.retries[i], fmtInt),
      { key: "violations", label: "violations", num: true, get: (i) => c.violations[i],
        text: (i) => (c.violations[i] ? `${c.violations[i]} ${words(c.violation_kinds[i])}` : "0"),
        cls: (i) => (c.violations[i] ? "bad" : "") }
    );
    for (const a of ASSERTS) if (c[a]) cols.push(strCol(a, words(a), (i) => c[a][i]));
    return cols;
  }

  function changedColumns() {
    const b = RUNS[0].cols, c = RUNS[1].cols;
    const at = (k) => CHANGED[k];
    const cols = [
      numCol("request_id", "id", (k) => b.request_id[at(k)], String),
      numCol("arrival_s", "arrival s", (k) => b.arrival_s[at(k)], fmtS),
      strCol("task_class", "class", (k) => b.task_class[at(k)]),
    ];
    [["b", b, "baseline"], ["c", c, "candidate"]].forEach(([s, x, group]) => {
      cols.push(
        Object.assign(strCol(s + ".route", "route", (k) => x.route[at(k)]), { group }),
        Object.assign(strCol(s + ".outcome", "outcome", (k) => x.outcome[at(k)], (k) => "outcome o-" + x.outcome[at(k)]), { group }),
        Object.assign(numCol(s + ".latency_ms", "latency ms", (k) => x.latency_ms[at(k)], fmtNum1), { group }),
        Object.assign(numCol(s + ".cost_usd", "cost $", (k) => x.cost_usd[at(k)], fmtCost), { group })
      );
    });
    cols.push(strCol("changed", "changed", (k) => WHAT[k]));
    return cols;
  }

  // what a row of the current tab is: rows of a run, or positions in CHANGED
  function current() {
    if (state.tab === "changed") return { kind: "changed", n: CHANGED.length, cols: changedColumns(), runs: [0, 1], pos: (k) => CHANGED[k] };
    const r = Number(state.tab.slice(3));
    return { kind: "run", n: RUNS[r].n, cols: runColumns(RUNS[r]), runs: [r], pos: (i) => i };
  }

  // ------------------------------------------------------------------ filters
  const FILTERS = [["route", "route"], ["outcome", "outcome"], ["phase", "phase"], ["tenant", "tenant"], ["task_class", "class"]];
  function values(key) {
    const seen = new Set();
    for (const run of RUNS) for (const v of run.cols[key] || []) seen.add(v);
    return [...seen].sort();
  }
  function renderFilters() {
    const form = $("filters");
    for (const [key, label] of FILTERS) {
      const vals = values(key);
      if (vals.length < 2 && key === "tenant") continue;
      const sel = el("select", { id: "f-" + key, name: key, onchange: (e) => { state.filters[key] = e.target.value; state.page = 0; render(); } },
        el("option", { value: "" }, "all"), vals.map((v) => el("option", { value: v }, v === "" ? "(none)" : v)));
      form.append(el("label", {}, label + " ", sel));
    }
    form.append(
      el("label", {}, "search ", el("input", { id: "f-q", type: "search", placeholder: "id, tier, violation…",
        oninput: (e) => { state.filters.q = e.target.value.trim().toLowerCase(); state.page = 0; render(); } })),
      el("label", {}, el("input", { id: "f-violations", type: "checkbox",
        onchange: (e) => { state.filters.violations = e.target.checked; state.page = 0; render(); } }), " with violations"),
      el("label", {}, "rows per page ", el("select", { id: "f-page", onchange: (e) => { state.pageSize = Number(e.target.value); state.page = 0; render(); } },
        [100, 500, 2000].map((n) => el("option", { value: n, selected: n === state.pageSize }, String(n)))))
    );
    form.addEventListener("submit", (e) => e.preventDefault());
  }

  function matches(r, i) {
    const f = state.filters, c = RUNS[r].cols;
    for (const [key] of FILTERS) if (f[key] && c[key] && c[key][i] !== f[key]) return false;
    if (f.violations && !c.violations[i]) return false;
    if (f.q) {
      const q = f.q;
      if (String(c.request_id[i]) === q) return true;
      const hay = [c.tiers_tried[i], c.violation_kinds[i], c.prevented_kinds[i], c.served_by[i], c.route[i], c.outcome[i], c.source_id ? c.source_id[i] : ""].join(" ").toLowerCase();
      if (!hay.includes(q)) return false;
    }
    return true;
  }

  // ------------------------------------------------------------------ the table
  let lastView = null;
  function render() {
    const cur = current();
    const keep = [];
    for (let k = 0; k < cur.n; k++) if (cur.runs.some((r) => matches(r, cur.pos(k)))) keep.push(k);
    const col = cur.cols.find((c) => c.key === state.sort.key) || cur.cols[0];
    const dir = state.sort.dir;
    const key = (k) => { const v = col.get(k); return v === null || v === undefined ? (col.num ? -Infinity : "") : v; };
    keep.sort((a, b) => { const x = key(a), y = key(b); return x < y ? -dir : x > y ? dir : a - b; });
    lastView = { cur, keep };
    const pages = Math.max(1, Math.ceil(keep.length / state.pageSize));
    state.page = Math.min(state.page, pages - 1);
    const from = state.page * state.pageSize, to = Math.min(keep.length, from + state.pageSize);

    const thead = $("requests").tHead, tbody = $("requests").tBodies[0];
    thead.replaceChildren();
    if (cur.cols.some((c) => c.group)) {
      const top = el("tr", { class: "groups" });
      let k = 0;
      while (k < cur.cols.length) {
        const g = cur.cols[k].group || "";
        let span = 1;
        while (k + span < cur.cols.length && (cur.cols[k + span].group || "") === g) span++;
        top.append(el("th", { colspan: span, class: g ? "group" : "" }, g));
        k += span;
      }
      thead.append(top);
    }
    thead.append(el("tr", {}, cur.cols.map((c) => {
      const sorted = c.key === col.key;
      return el("th", { scope: "col", class: c.num ? "num" : "", data: { key: c.key },
        "aria-sort": sorted ? (dir > 0 ? "ascending" : "descending") : "none" },
        el("button", { type: "button", onclick: () => sortBy(c.key) }, c.label, el("span", { class: "arrow" }, sorted ? (dir > 0 ? " ▲" : " ▼") : "")));
    })));
    const frag = document.createDocumentFragment();
    for (let j = from; j < to; j++) {
      const k = keep[j];
      const tr = el("tr", { data: { k }, class: state.selected === k ? "sel" : "", tabindex: 0,
        onclick: () => select(k), onkeydown: (e) => { if (e.key === "Enter") select(k); } });
      for (const c of cur.cols) tr.append(el("td", { class: [c.num ? "num" : "", c.cls ? c.cls(k) : ""].join(" ").trim() || null, data: { key: c.key } }, c.text(k)));
      frag.append(tr);
    }
    tbody.replaceChildren(frag);
    const what = cur.kind === "changed" ? "changed requests" : "requests";
    $("count").textContent = `${fmtInt(keep.length)} of ${fmtInt(cur.n)} ${what}` + (keep.length > state.pageSize ? ` · rows ${fmtInt(from + 1)}–${fmtInt(to)}` : "");
    renderPager(pages);
  }
  function renderPager(pages) {
    const pager = $("pager");
    pager.replaceChildren();
    if (pages < 2) return;
    const go = (p) => () => { state.page = p; render(); };
    pager.append(
      el("button", { type: "button", id: "prev", disabled: state.page === 0, onclick: go(state.page - 1) }, "‹ previous"),
      ` page ${state.page + 1} of ${pages} `,
      el("button", { type: "button", id: "next", disabled: state.page >= pages - 1, onclick: go(state.page + 1) }, "next ›")
    );
  }
  function sortBy(key) {
    state.sort = state.sort.key === key ? { key, dir: -state.sort.dir } : { key, dir: 1 };
    render();
  }
  function select(k) {
    state.selected = k;
    for (const tr of $("requests").tBodies[0].rows) tr.classList.toggle("sel", Number(tr.dataset.k) === k);
    const cur = lastView.cur;
    openDetail(cur.runs, cur.pos(k));
  }

  // ------------------------------------------------------------------ one request
  function clearDetail() {
    $("detail").replaceChildren(el("p", { class: "hint" }, "Click a request to see its timeline."));
  }
  function getDetail(r, i) {
    const run = RUNS[r];
    const embedded = run.info.details[String(i)];
    if (embedded) return Promise.resolve(embedded);
    if (run.cache[i]) return run.cache[i];
    if (!DATA.served) return Promise.resolve(null);
    const p = fetch(`api/detail?run=${r}&row=${run.row(i)}`, { headers: { Accept: "application/json" } })
      .then((res) => (res.ok ? res.json() : Promise.reject(new Error(res.status + " " + res.statusText))));
    run.cache[i] = p;
    return p;
  }

  let token = 0;
  function openDetail(runs, i) {
    const mine = ++token;
    const box = $("detail");
    box.replaceChildren(el("p", { class: "hint" }, "loading…"));
    Promise.all(runs.map((r) => getDetail(r, i).catch((err) => ({ error: String(err.message || err) })))).then((details) => {
      if (mine !== token) return;
      const c = RUNS[runs[0]].cols;
      const title = el("h2", { id: "detail-title" }, `Request ${c.request_id[i]}` + (c.replication ? ` (replication ${c.replication[i]})` : "") + (c.source_id && c.source_id[i] ? ` · ${c.source_id[i]}` : ""));
      const sides = el("div", { class: runs.length > 1 ? "sides two" : "sides" }, runs.map((r, j) => side(r, i, details[j], runs.length > 1)));
      box.replaceChildren(title, sides, legend());
      box.scrollIntoView({ block: "nearest" });
    });
  }

  function side(r, i, d, labelled) {
    const run = RUNS[r], c = run.cols;
    const box = el("section", { class: "side", data: { run: r } });
    if (labelled) box.append(el("h3", {}, `${SIDE[r]}: ${run.info.name}`));
    box.append(summary(run, i, d && !d.error ? d.request : null));
    if (!d) box.append(el("p", { class: "note" }, run.info.details_note || "No spans for this request in this file."));
    else if (d.error) box.append(el("p", { class: "note warn" }, "could not load this request: " + d.error));
    else {
      box.append(waterfall(d.spans, c.latency_ms[i], c.outcome[i]));
      box.append(texts(run, d));
    }
    return box;
  }

  function summary(run, i, req) {
    const c = run.cols, q = req || {};
    const rows = [
      ["outcome", el("span", { class: "outcome o-" + c.outcome[i] }, c.outcome[i]), c.success[i] ? " (a success)" : " (not a success)"],
      ["route", c.route[i]], ["served by", c.served_by[i]], ["tiers tried", c.tiers_tried[i] || "–"],
      ["class", c.task_class[i]], ["phase", c.phase[i]],
    ];
    if (c.tenant && c.tenant[i]) rows.push(["tenant", c.tenant[i]]);
    rows.push(["arrival", fmtS(c.arrival_s[i]) + " s"], ["latency", fmtMs(c.latency_ms[i])]);
    if ("ttft_ms" in q) rows.push(["first token", fmtMs(q.ttft_ms)]);
    rows.push(["cost", "$" + fmtCost(c.cost_usd[i])]);
    if ("input_tokens" in q) rows.push(["tokens", `${fmtInt(q.input_tokens)} in (${fmtInt(q.cached_input_tokens)} cached) / ${fmtInt(q.output_tokens)} out`]);
    rows.push(["retries / fallbacks", `${c.retries[i]} / ${c.fallbacks[i]}`]);
    if (c.handoff[i]) rows.push(["handoff", "to a human" + ("handoff_wait_ms" in q ? `, waited ${fmtMs(q.handoff_wait_ms)}` : "")]);
    if ("escalated" in q) rows.push(["escalated", q.escalated ? "yes" + (q.escalation_harm ? " (and it turned a right answer wrong)" : "") : "no"]);
    if ("confidence" in q) rows.push(["confidence", q.confidence === null ? "–" : q.confidence.toFixed(3)]);
    rows.push(["violations", c.violations[i] ? el("span", { class: "bad" }, `${c.violations[i]}: ${words(c.violation_kinds[i])}`) : "none"]);
    rows.push(["prevented", c.prevented_kinds[i] ? words(c.prevented_kinds[i]) : "none"]);
    const edges = ["pii", "prompt_injection", "prohibited_action", "high_impact", "evasive"].filter((e) => q[e]);
    if (req) rows.push(["edge cases", edges.length ? edges.map(words).join(", ") : "none"]);
    if ("session_id" in q && q.turn) rows.push(["session", `${q.session_id}, turn ${q.turn}`]);
    for (const a of ASSERTS) if (c[a]) rows.push([words(a), String(c[a][i])]);
    return el("dl", { class: "summary" }, rows.map(([k, ...v]) => [el("dt", {}, k), el("dd", {}, ...v)]));
  }

  function texts(run, d) {
    if (!run.info.text_retained) return el("p", { class: "note text-note" }, "Prompt and answer text not retained by this run's policy (policies.retention.store_text).");
    const block = (label, text) => el("div", { class: "text" }, el("h4", {}, label), el("pre", { class: "text-" + label }, text === "" ? "(empty)" : text));
    return el("div", { class: "texts" }, block("prompt", d.prompt || ""), block("answer", d.answer || ""));
  }

  const TOOLISH = new Set(["execute_tool", "retrieval"]);
  function annotate(spans) {
    // retries (a call to the same model or tool and purpose after a failed one), fallbacks
    // (a new tier after a failure) and escalations (a new tier after a good answer)
    const last = {};
    let tier = null, failed = false;
    return spans.map((s) => {
      const tags = [];
      const target = s.model || s.tool;
      if (target && (s.kind === "chat" || TOOLISH.has(s.kind))) {
        const prev = last[target + "/" + s.name];
        if (prev && (prev.status || "ok") !== "ok") tags.push("retry");
        last[target + "/" + s.name] = s;
      }
      if (s.kind === "router") { tier = (s.detail || "").split(":")[0] || tier; failed = false; }
      if (s.kind === "chat" && s.tier && s.name !== "classify") {
        if (tier && s.tier !== tier) tags.push(failed ? "fallback" : "escalation");
        tier = s.tier;
      }
      if ((s.status || "ok") !== "ok") failed = true;
      else if (s.kind === "chat" && s.name !== "classify") failed = false;
      return tags;
    });
  }

  function spanNote(s) {
    const parts = [];
    if (s.kind === "router") {
      const [tier, reason] = String(s.detail || "").split(":");
      parts.push(`to ${tier}` + (reason ? ` (${words(reason)})` : ""));
    } else if (s.kind === "policy_check") {
      parts.push((s.caught ? "caught " : "did not catch ") + (s.detail ? words(s.detail) : "anything"));
      if (s.stage) parts.push("at " + s.stage);
      parts.push(s.acted ? "acted" : "did not act");
      if (s.guards) parts.push("guards " + words(s.guards));
    } else if (s.kind === "breaker") {
      parts.push(`circuit ${s.detail || "open"}: call rejected`);
    } else if (s.kind === "backoff") {
      parts.push("wait before retrying");
    } else if (s.kind === "handoff") {
      parts.push(`to a human (${words(s.name)})`);
    } else if (s.detail) parts.push(s.detail);
    if (s.input_tokens || s.output_tokens) parts.push(`${fmtInt(s.input_tokens || 0)} in` + (s.cached_tokens ? ` (${fmtInt(s.cached_tokens)} cached)` : "") + ` / ${fmtInt(s.output_tokens || 0)} out tokens`);
    if (s.cost_usd) parts.push("$" + fmtCost(s.cost_usd));
    if (s.queue_ms) parts.push("queued " + fmtMs(s.queue_ms));
    if (s.ttft_ms && s.kind === "chat") parts.push("first token " + fmtMs(s.ttft_ms));
    if ((s.status || "ok") !== "ok" && s.kind !== "breaker") parts.push("status " + s.status + (s.http ? ` (HTTP ${s.http})` : ""));
    if (s.fault) parts.push("fault " + s.fault);
    return parts.join(" · ");
  }

  function niceStep(total) {
    const raw = total / 6, p = Math.pow(10, Math.floor(Math.log10(raw || 1)));
    for (const m of [1, 2, 5, 10]) if (raw <= m * p) return m * p;
    return 10 * p;
  }
  const fmtTick = (ms) => (ms >= 1000 ? `${+(ms / 1000).toFixed(2)} s` : `${+ms.toFixed(1)} ms`);

  function waterfall(spans, latency, outcome) {
    let total = latency || 0;
    for (const s of spans) total = Math.max(total, (s.start_ms || 0) + (s.duration_ms || 0));
    total = total || 1;
    const pct = (v) => `${Math.max(0, Math.min(100, (100 * v) / total))}%`;
    const wf = el("div", { class: "wf", role: "table", "aria-label": "timeline" });
    const axis = el("div", { class: "wf-axis" });
    const step = niceStep(total);
    for (let t = 0; t <= total + 1e-9; t += step) {
      const tick = el("span", { class: "tick" }, fmtTick(t));
      tick.style.left = pct(t);
      axis.append(tick);
    }
    wf.append(el("div", { class: "wf-row wf-head" }, el("div", { class: "wf-label" }, `${spans.length} spans`), axis, el("div", { class: "wf-dur" }, "duration")));
    const reqBar = el("div", { class: "wf-bar k-request" });
    reqBar.style.left = "0%";
    reqBar.style.width = pct(latency || 0);
    wf.append(el("div", { class: "wf-row request-row" },
      el("div", { class: "wf-label" }, el("span", { class: "kind k-request" }, "request"), " arrival → ", outcome),
      el("div", { class: "wf-track" }, reqBar), el("div", { class: "wf-dur" }, fmtMs(latency))));
    const tags = annotate(spans);
    spans.forEach((s, j) => {
      const status = s.status || "ok";
      const bar = el("div", { class: `wf-bar k-${s.kind}` + (status !== "ok" ? " failed" : "") + ((s.duration_ms || 0) === 0 ? " instant" : "") });
      bar.style.left = pct(s.start_ms || 0);
      bar.style.width = pct(s.duration_ms || 0);
      if (s.queue_ms && s.duration_ms) {
        const q = el("div", { class: "wf-queue", title: "queued" });
        q.style.width = `${(100 * s.queue_ms) / s.duration_ms}%`;
        bar.append(q);
      }
      const sub = [s.model, s.tool && s.tool !== s.name ? s.tool : null, s.tier, s.call ? `call ${s.call}` : null].filter(Boolean).join(" · ");
      const label = el("div", { class: "wf-label" },
        el("span", { class: "kind k-" + s.kind }, words(s.kind)), " ", el("span", { class: "span-name" }, s.name),
        sub ? el("span", { class: "sub" }, " " + sub) : null,
        tags[j].map((t) => el("span", { class: "tag t-" + t }, t)),
        status !== "ok" ? el("span", { class: "tag t-failed" }, status) : null,
        s.violation ? el("span", { class: "tag t-violation" }, "let through: " + words(s.violation)) : null);
      const row = el("div", { class: "wf-row span-row" + (status !== "ok" ? " failed" : ""), role: "row",
        data: { kind: s.kind, name: s.name, durationMs: s.duration_ms || 0, startMs: s.start_ms || 0, status } },
        label, el("div", { class: "wf-track" }, bar), el("div", { class: "wf-dur span-duration" }, fmtMs(s.duration_ms || 0)));
      const note = spanNote(s);
      row.append(el("div", { class: "wf-note" }, `at +${fmtMs(s.start_ms || 0)}` + (note ? ` · ${note}` : "")));
      wf.append(row);
    });
    if (!spans.length) wf.append(el("p", { class: "note" }, "No spans recorded for this request."));
    return wf;
  }

  function legend() {
    const kinds = ["request", "chat", "execute_tool", "retrieval", "router", "policy_check", "backoff", "breaker", "handoff", "respond"];
    return el("p", { class: "legend" }, "Bars: ", kinds.map((k) => el("span", { class: "kind k-" + k }, words(k))),
      el("span", { class: "kind k-queue" }, "queued part"), el("span", { class: "kind k-failed" }, "failed call"),
      " · times are from the request's arrival; zero-length events are ticks.");
  }

  if (DATA.format !== 1) {
    document.body.replaceChildren(el("p", {}, "This viewer file has an unknown format; re-create it with evalx view."));
    return;
  }
  renderHead();
  renderFilters();
  render();
})();
