// Vision-to-tag console: vanilla JS over /api/v1. Every request carries the API key entered once
// (localStorage), as X-API-Key; <video>/<img> use /web/media/..., which read it from a cookie.
"use strict";

const KEY = "vtt_key";
const $ = (sel, root = document) => root.querySelector(sel);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function notice(text) {
  const n = $("#notice");
  n.textContent = text || "";
  n.hidden = !text;
}

function apiKey() { return localStorage.getItem(KEY) || ""; }

function setKey(key) {
  if (key) localStorage.setItem(KEY, key); else localStorage.removeItem(KEY);
  document.cookie = KEY + "=" + encodeURIComponent(key) + "; path=/web/media; SameSite=Strict" +
    (key ? "" : "; max-age=0");
}

async function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (apiKey()) headers.set("X-API-Key", apiKey());
  const resp = await fetch(path, { ...options, headers });
  if (resp.status === 401) notice("This service needs an API key: enter it above.");
  const type = resp.headers.get("content-type") || "";
  const body = type.includes("json") ? await resp.json() : await resp.text();
  if (!resp.ok) {
    const msg = (body && body.message) || resp.statusText;
    const err = new Error(msg);
    err.status = resp.status;
    throw err;
  }
  return body;
}

const fmt = (s) => (s === null || s === undefined ? "" : Number(s).toFixed(1) + " s");
const pct = (f) => Math.round((f || 0) * 100) + "%";

function every(ms, fn) {
  let busy = false;
  const tick = async () => {
    if (busy || document.hidden) return;
    busy = true;
    try { await fn(); } catch (e) { if (e.status !== 401) notice(e.message); } finally { busy = false; }
  };
  tick();
  return setInterval(tick, ms);
}

// --- Tasks ------------------------------------------------------------------------------
function taskRow(t) {
  const failed = t.status === "failed";
  const err = t.error || t.last_error;
  const retry = failed ? el("button", { type: "button", class: "small", "data-retry": t.task_id,
    "aria-label": "Retry task " + t.task_id.slice(0, 8), text: "Retry" }) : null;
  return el("tr", { "data-task": t.task_id, "data-status": t.status },
    el("td", {}, el("a", { href: "/video/" + t.task_id, text: t.task_id.slice(0, 8) })),
    el("td", {}, el("span", { class: "badge " + t.status, text: t.status })),
    el("td", { class: "stage", text: t.progress.stage || "" }),
    el("td", {}, el("progress", { max: "1", value: String(t.progress.fraction || 0),
      "aria-label": "progress " + pct(t.progress.fraction) }), " " + pct(t.progress.fraction)),
    el("td", { text: t.platform }),
    el("td", { text: (t.created_at || "").replace("T", " ").slice(0, 19) }),
    el("td", { class: "error" }, err ? el("code", { text: err.code }) : null, err ? " " + (err.message || "") : ""),
    el("td", {}, retry));
}

function initTasks() {
  const filters = $("#filter-form");
  let lastList = "";
  const refresh = async () => {
    const q = new URLSearchParams({ page_size: "50" });
    for (const [k, v] of new FormData(filters)) if (v) q.set(k, v);
    const data = (await api("/api/v1/tasks?" + q)).data;
    const seen = JSON.stringify(data.items);
    // Redraw only on change, so keyboard focus on a link or button survives the polling.
    if (seen !== lastList) $("#task-table tbody").replaceChildren(...data.items.map(taskRow));
    lastList = seen;
    $("#task-count").textContent = data.total + " task(s)" + (data.total > data.items.length ? ", newest 50 shown" : "");
    try {
      const s = (await api("/api/v1/queue/stats")).data;
      $("#queue-stats").textContent = `Queue: ${s.queued} waiting, ${s.in_flight} running, ${s.delayed} delayed, ` +
        `${s.failed} failed; ${s.consumers_alive} consumer(s) alive`;
    } catch (e) { $("#queue-stats").textContent = ""; }
  };
  filters.addEventListener("submit", (e) => { e.preventDefault(); refresh(); });
  $("#task-table").addEventListener("click", async (e) => {
    const id = e.target.getAttribute && e.target.getAttribute("data-retry");
    if (!id) return;
    e.target.disabled = true;
    try { await api(`/api/v1/task/${id}/retry`, { method: "POST" }); notice(""); await refresh(); }
    catch (err) { notice("Retry failed: " + err.message); e.target.disabled = false; }
  });
  $("#submit-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const form = e.target;
    const out = $("#submit-result");
    const fd = new FormData(form);
    const file = $("#f-file").files[0];
    const fields = {};
    for (const k of ["platform", "uid", "env", "dimensions"]) if (fd.get(k)) fields[k] = fd.get(k);
    if (fields.uid) fields.uid = Number(fields.uid);
    try {
      let body;
      if (file) {
        const up = new FormData();
        up.append("file", file);
        for (const [k, v] of Object.entries(fields)) up.append(k, String(v));
        body = await api("/api/v1/task/upload", { method: "POST", body: up });
      } else {
        if (!fd.get("url")) { out.textContent = "Give a URL or choose a file."; return; }
        body = await api("/api/v1/task/create", { method: "POST", headers: { "content-type": "application/json" },
          body: JSON.stringify({ url: fd.get("url"), ...fields }) });
      }
      out.textContent = "Accepted: task " + body.task_id;
      form.reset();
      await refresh();
    } catch (err) { out.textContent = "Refused: " + err.message; }
  });
  every(1000, refresh);
}

// --- A video ----------------------------------------------------------------------------
function initVideo() {
  const player = $("#player");
  const id = player.dataset.task;
  const start = Number(new URLSearchParams(location.search).get("t"));
  let duration = 0;
  const seek = (s) => {
    player.currentTime = s;
    player.dataset.seeked = String(s);
  };
  if (start > 0) {
    player.addEventListener("loadedmetadata", () => seek(start), { once: true });
  }
  player.src = "/web/media/" + id + "/video";
  player.addEventListener("timeupdate", () => {
    $("#now").textContent = player.currentTime.toFixed(1) + " s";
    const head = $("#playhead");
    if (head && duration) head.style.left = (100 * player.currentTime / duration) + "%";
  });
  player.addEventListener("error", () => {
    $("#video-status").textContent = "The video is not in the cache (not downloaded yet, or evicted).";
  });

  const item = (label, startS, endS, cls, content) => el("button", {
    type: "button", class: "item " + cls, title: label, "aria-label": label + ", at " + fmt(startS),
    "data-start": String(startS),
    style: `left:${100 * startS / duration}%;width:max(0.6rem, ${100 * Math.max(0, endS - startS) / duration}%)`,
    onclick: () => seek(startS) }, content || "");

  const track = (name, items) => el("div", { class: "track", role: "group", "aria-label": name, "data-track": name },
    el("span", { class: "track-name", text: name }),
    el("div", { class: "lane" }, ...(items.length ? items : [el("span", { class: "empty", text: "none" })])));

  const download = async (kind) => {
    const q = kind === "json" ? "" : "?format=" + kind;
    try {
      const headers = apiKey() ? { "X-API-Key": apiKey() } : {};
      const resp = await fetch(`/api/v1/task/${id}/result${q}`, { headers });
      if (!resp.ok) throw new Error((await resp.json()).message);
      const blob = await resp.blob();
      const a = el("a", { href: URL.createObjectURL(blob), download: `${id}.${kind}` });
      document.body.append(a); a.click(); a.remove();
    } catch (e) { notice("Download failed: " + e.message); }
  };
  document.querySelectorAll("[data-download]").forEach((b) =>
    b.addEventListener("click", () => download(b.dataset.download)));

  const render = (doc) => {
    duration = (doc.video && doc.video.duration_s) || 1;
    const t0 = (doc.video && doc.video.start_s) || 0;
    const scenes = (doc.scenes || []).map((s) => item(`Scene ${s.index + 1}, ${fmt(s.start_s)} to ${fmt(s.end_s)}`,
      s.start_s - t0, s.end_s - t0, "scene", s.keyframe && s.keyframe.thumbnail ? el("img", { alt: "",
        loading: "lazy", src: `/web/media/${id}/thumbs/${s.keyframe.thumbnail.split("/").pop()}` }) : ""));
    const tags = (doc.tags || []).slice(0, 8).map((t) => track("tag: " + t.name,
      (t.ranges || []).map(([a, b]) => item(`${t.name} ${fmt(a)} to ${fmt(b)}`, a - t0, b - t0, "tag"))));
    const speech = ((doc.speech || {}).segments || []).map((s) => item(s.text, s.start_s - t0, s.end_s - t0, "speech"));
    const text = (doc.text || []).map((s) => item(s.text, s.start_s - t0, s.end_s - t0, "ocr"));
    const faces = ((doc.faces || {}).scenes || []).filter((f) => f.max_faces > 0).map((f) => {
      const s = (doc.scenes || [])[f.scene] || { start_s: f.largest.time_s, end_s: f.largest.time_s };
      return item(`${f.max_faces} face(s) in scene ${f.scene + 1}`, s.start_s - t0, s.end_s - t0, "face");
    });
    const flags = ((doc.moderation || {}).triggers || []).map((m) =>
      item(`${m.class} ${Math.round(m.score * 100)}%`, m.time_s - t0, m.time_s - t0, "flag"));
    const ruler = el("div", { class: "ruler", "aria-hidden": "true" }, el("span", { text: "0 s" }),
      el("span", { text: fmt(duration) }), el("div", { id: "playhead", class: "playhead" }));
    $("#timeline").replaceChildren(ruler, track("scenes", scenes), ...tags, track("transcript", speech),
      track("on-screen text", text), track("faces", faces), track("moderation", flags));
    $("#tag-table tbody").replaceChildren(...(doc.tags || []).map((t) => el("tr", {},
      el("th", { scope: "row", text: t.name }), el("td", { text: pct(t.confidence) }),
      el("td", { text: (t.sources || []).join(", ") }),
      el("td", {}, ...(t.ranges || []).map(([a]) => el("button", { type: "button", class: "small link",
        onclick: () => seek(a - t0), text: fmt(a) }))))));
  };

  let timer = null;
  const load = async () => {
    const task = (await api("/api/v1/task/" + id)).data;
    const status = $("#video-status");
    if (task.status === "failed") status.textContent = `Failed: ${task.error.code}: ${task.error.message}`;
    else if (task.status !== "completed") status.textContent = `${task.status}: ${task.progress.stage} ${pct(task.progress.fraction)}`;
    else {
      const doc = task.result;
      status.textContent = `Completed · ${fmt(doc.video.duration_s)} · ${doc.video.width}×${doc.video.height} · ` +
        `${(doc.scenes || []).length} scene(s) · ${(doc.tags || []).length} tag(s)` + (doc.partial ? " · partial" : "");
      render(doc);
      clearInterval(timer);
      if (!player.currentSrc || player.error) player.src = "/web/media/" + id + "/video";
    }
  };
  timer = every(1500, load);
}

// --- Search -----------------------------------------------------------------------------
function highlightNodes(marked) {
  // `highlight` is HTML-escaped text with <em> around matches: rebuild it as text nodes, never as HTML.
  const decode = (s) => { const t = document.createElement("textarea"); t.innerHTML = s; return t.value; };
  const out = [];
  let inside = false;
  for (const part of String(marked).split(/(<\/?em>)/)) {
    if (part === "<em>") inside = true;
    else if (part === "</em>") inside = false;
    else if (part) out.push(inside ? el("mark", { text: decode(part) }) : document.createTextNode(decode(part)));
  }
  return out;
}

function initSearch() {
  const form = $("#search-form");
  let cursor = null;
  const params = () => {
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v) q.set(k, v);
    return q;
  };
  const hit = (h) => el("li", { class: "hit", "data-task": h.task_id },
    el("p", {}, el("a", { href: "/video/" + h.task_id, text: "Video " + h.task_id.slice(0, 8) }),
      ` · ${h.platform || ""} · ${fmt(h.duration_s)} · ${(h.created_at || "").slice(0, 10)}`),
    el("p", { class: "muted hit-tags", text: (h.tags || []).slice(0, 8).map((t) => t.name || t).join(", ") }),
    el("ul", { class: "moments" }, ...(h.moments || []).map((m) => el("li", {},
      el("a", { href: `/video/${h.task_id}?t=${m.start_s}`, "data-start": String(m.start_s) },
        el("span", { class: "kind", text: `${m.kind} ${fmt(m.start_s)}` }), " ", ...highlightNodes(m.highlight || m.text))))));
  const facetGroup = (title, items, apply) => el("div", { class: "facet" }, el("h3", { text: title }),
    el("ul", {}, ...items.map((f) => el("li", {}, el("button", { type: "button", class: "small link",
      onclick: () => { apply(f.value); run(false); }, text: `${f.value} (${f.count})` })))));
  const run = async (more) => {
    const q = params();
    if (more && cursor) q.set("cursor", cursor);
    const status = $("#search-status");
    status.textContent = "Searching…";
    try {
      const data = (await api("/api/v1/search?" + q)).data;
      const items = data.items.map(hit);
      if (more) $("#hits").append(...items); else $("#hits").replaceChildren(...items);
      cursor = data.next_cursor;
      $("#more").hidden = !cursor;
      status.textContent = `${data.total} video(s)` + (data.semantic ? " · by meaning" : "");
      const f = data.facets || {};
      const norm = (xs) => (xs || []).map((x) => (Array.isArray(x) ? { value: x[0], count: x[1] } : x));
      $("#facets").replaceChildren(
        facetGroup("Tags", norm(f.tags), (v) => {
          const cur = $("#s-tags").value.split(",").map((s) => s.trim()).filter(Boolean);
          if (!cur.includes(v)) cur.push(v);
          $("#s-tags").value = cur.join(",");
        }),
        facetGroup("Platforms", norm(f.platforms), (v) => { $("#s-platform").value = v; }));
    } catch (e) { status.textContent = "Search failed: " + e.message; }
  };
  form.addEventListener("submit", (e) => { e.preventDefault(); run(false); });
  $("#more").addEventListener("click", () => run(true));
  const initial = new URLSearchParams(location.search);
  if (initial.get("q")) { $("#s-q").value = initial.get("q"); run(false); }
}

// --- Accounts ---------------------------------------------------------------------------
function initAccounts() {
  every(3000, async () => {
    const data = (await api("/api/v1/accounts")).data;
    const rows = (data.accounts || []).map((a) => el("tr", { "data-account": a.id },
      el("td", {}, el("code", { text: a.key })), el("td", { text: a.project || "" }),
      el("td", {}, el("span", { class: "badge " + a.status, text: a.status }),
        a.status_reason ? " " + a.status_reason : ""),
      el("td", { text: `${a.minute.used} / ${a.minute.limit}` }), el("td", { text: `${a.today.used} / ${a.today.limit}` }),
      el("td", { text: a.cooldown_until || "" }),
      el("td", { text: a.last_error ? `${a.last_error} (${a.last_error_at || ""})` : "" })));
    if (!rows.length) rows.push(el("tr", {}, el("td", { colspan: "7", text: "No accounts in the pool." })));
    $("#account-table tbody").replaceChildren(...rows);
    const t = data.totals || {};
    $("#totals").textContent = Object.entries(t).map(([k, v]) => `${k.replace(/_/g, " ")}: ${v}`).join(" · ");
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const input = $("#api-key");
  input.value = apiKey();
  if (apiKey()) setKey(apiKey());  // keep the media cookie in step with the stored key
  $("#key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    setKey(input.value.trim());
    notice("");
    location.reload();
  });
  ({ tasks: initTasks, video: initVideo, search: initSearch, accounts: initAccounts })[document.body.dataset.page]();
});
