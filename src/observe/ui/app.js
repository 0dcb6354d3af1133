"use strict";
// The Picket dashboard: polls /api/ on the same listener every few seconds
// and draws with the DOM only: names come from the network, so they are
// only ever put in as text.
(function () {
  const POLL_MS = 5000;
  const SVG = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);

  // With --admin-token the page is opened as /?token=...: keep the token for
  // this tab and take it out of the address bar.
  const params = new URLSearchParams(location.search);
  if (params.has("token")) {
    sessionStorage.setItem("picket-token", params.get("token"));
    history.replaceState(null, "", location.pathname);
  }
  const token = sessionStorage.getItem("picket-token");

  async function api(path) {
    const headers = token ? { Authorization: "Bearer " + token } : {};
    const r = await fetch(path, { headers, cache: "no-store" });
    const body = await r.json().catch(() => ({ error: "HTTP " + r.status }));
    if (!r.ok) throw new Error(body.error || "HTTP " + r.status);
    return body;
  }

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  const num = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
  const pct = (x) => (x === null || x === undefined ? "–" : num.format(x * 100) + " %");
  const ms = (x) => (x === null || x === undefined ? "–" : num.format(x) + " ms");

  function uptime(s) {
    const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
    return (d ? d + "d " : "") + (d || h ? h + "h " : "") + m + "m " + (s % 60) + "s";
  }

  // Lines on a 360×100 view box, one point per slot of the last hour, the
  // newest at the right edge; null breaks a line. Returns the maximum.
  const SLOTS = 360;
  function chart(svg, lines, fixedMax) {
    svg.replaceChildren();
    let max = fixedMax || 0;
    if (!fixedMax) for (const l of lines) for (const v of l.values) if (v !== null && v > max) max = v;
    if (max <= 0) max = 1;
    const base = document.createElementNS(SVG, "line");
    for (const [k, v] of [["x1", 0], ["x2", 360], ["y1", 99], ["y2", 99], ["stroke", "currentColor"], ["stroke-opacity", "0.3"]]) base.setAttribute(k, v);
    svg.appendChild(base);
    for (const l of lines) {
      const n = l.values.length;
      const step = 360 / (SLOTS - 1);
      const first = SLOTS - n;
      let points = [];
      const flush = () => {
        if (points.length === 1) points.push([points[0][0] - 2, points[0][1]]);
        if (points.length) {
          const p = document.createElementNS(SVG, "polyline");
          p.setAttribute("points", points.map((q) => q[0].toFixed(1) + "," + q[1].toFixed(1)).join(" "));
          p.setAttribute("fill", "none");
          p.setAttribute("stroke", l.color);
          p.setAttribute("stroke-width", "1.5");
          p.setAttribute("vector-effect", "non-scaling-stroke");
          svg.appendChild(p);
        }
        points = [];
      };
      l.values.forEach((v, i) => {
        if (v === null) return flush();
        points.push([(first + i) * step, 98 - (v / max) * 94]);
      });
      flush();
    }
    return max;
  }

  function colors() {
    const s = getComputedStyle(document.documentElement);
    return { a: s.getPropertyValue("--a").trim(), b: s.getPropertyValue("--b").trim() };
  }

  function showStats(s) {
    const st = $("status");
    st.replaceChildren();
    st.append(el("span", s.ready ? "ready" : "not ready: " + s.not_ready, s.ready ? "ready" : "notready"));
    st.append(" · version " + s.version + " · up " + uptime(s.uptime_seconds) + " · policy v" + s.policy.version);
    const r = s.policy.last_reload;
    if (r) st.append(el("span", r.error ? " · last reload FAILED at " + r.time + " (" + r.error + "), the previous policy stays in force" : " · reloaded " + r.time, r.error ? "bad" : ""));
    $("qps").textContent = num.format(s.last_minute.qps);
    $("blocked-share").textContent = pct(s.last_minute.blocked_share);
    $("hit-ratio").textContent = pct(s.last_minute.cache_hit_ratio);
    $("total-queries").textContent = num.format(s.totals.queries);
    $("total-blocked").textContent = num.format(s.totals.blocked);
    const c = colors();
    const max = chart($("chart-qps"), [
      { values: s.series.qps, color: c.a },
      { values: s.series.blocked_qps, color: c.b },
    ]);
    $("chart-qps").setAttribute("aria-label", "Queries per second over the last hour, peak " + num.format(max));
    $("qps-peak").textContent = "peak " + num.format(max);
    chart($("chart-hits"), [{ values: s.series.cache_hit_ratio, color: c.a }], 1);
    const ups = $("upstreams");
    ups.replaceChildren();
    if (!s.upstreams.servers.length) ups.append(el("p", "No upstream exchange yet.", "empty"));
    for (const u of s.upstreams.servers) {
      const f = el("figure");
      const cap = el("figcaption", u.upstream + ": p50 " + ms(u.p50_ms) + ", p99 " + ms(u.p99_ms) +
        " (" + num.format(u.exchanges) + " exchanges, " + num.format(u.failures) + " failed)");
      const key = el("span", null, "key");
      key.append(el("span", null, "sw a"), "p50", el("span", null, "sw b"), "p99");
      cap.append(key);
      const svg = document.createElementNS(SVG, "svg");
      svg.setAttribute("viewBox", "0 0 360 100");
      svg.setAttribute("preserveAspectRatio", "none");
      svg.setAttribute("role", "img");
      const top = chart(svg, [
        { values: u.series.p50_ms, color: c.a },
        { values: u.series.p99_ms, color: c.b },
      ]);
      svg.setAttribute("aria-label", "Latency of " + u.upstream + " over the last hour, p50 and p99, up to " + ms(top));
      f.append(cap, svg);
      ups.append(f);
    }
    $("privacy").textContent = "Clients are shown as the query log writes them (--log-client-ip " + s.client_ip +
      "). Top lists cover the last hour; " + num.format(s.not_listed) + " queries were counted but not listed (busy workers).";
  }

  function showTop(t) {
    const fill = (id, list, empty) => {
      const ol = $(id);
      ol.replaceChildren();
      if (!list || !list.entries.length) { ol.append(el("li", empty, "empty")); return; }
      for (const e of list.entries) {
        const li = el("li", e.key + " ");
        li.append(el("span", num.format(e.count), "count"));
        ol.append(li);
      }
    };
    fill("top-blocked", t.lists.blocked, "nothing blocked");
    fill("top-rules", t.lists.rules, "no rule hit");
    fill("top-clients", t.lists.clients, t.clients_hidden ? "hidden (--log-client-ip none)" : "no client");
    fill("top-orgs", t.lists.orgs, "no organization");
    fill("top-names", t.lists.names, "no query");
  }

  function showRecent(r) {
    const body = $("recent").tBodies[0];
    body.replaceChildren();
    for (const q of r.queries) {
      const tr = el("tr");
      const cells = [q.time.slice(11, 19), q.client || "hidden", q.qname || "(none)", q.qtype || "",
        q.action, q.rule || "", q.rcode || "no answer", q.cache, q.duration_us];
      cells.forEach((v, i) => tr.append(el("td", v, i === 2 ? "name" : "")));
      body.append(tr);
    }
    if (!r.queries.length) {
      const td = el("td", "No query matches.", "empty");
      td.colSpan = 9;
      body.append(el("tr")).append(td);
    }
  }

  function filterQuery() {
    const f = new FormData($("filter"));
    const q = new URLSearchParams({ limit: "50" });
    for (const [k, v] of f) if (String(v).trim()) q.set(k, String(v).trim());
    return q.toString();
  }

  async function refresh() {
    try {
      const [s, t, r] = await Promise.all([
        api("/api/stats"), api("/api/top?n=10"), api("/api/recent?" + filterQuery()),
      ]);
      showStats(s); showTop(t); showRecent(r);
    } catch (e) {
      $("status").replaceChildren(el("span", "Cannot reach Picket's API: " + e.message +
        (token ? "" : " (with --admin-token, open this page as /?token=TOKEN)"), "bad"));
    }
  }

  for (const a of ["block", "refuse", "drop", "resolve", "allow", "override", "truncate", "local", "denied", "ratelimited", "malformed", "overloaded"]) {
    $("filter").elements.action.append(new Option(a, a));
  }
  $("filter").addEventListener("submit", (e) => { e.preventDefault(); refresh(); });
  $("explain").addEventListener("submit", async (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(e.target)) if (String(v).trim()) q.set(k, String(v).trim());
    try {
      $("trace").textContent = (await api("/api/explain?" + q.toString())).trace;
    } catch (err) {
      $("trace").textContent = err.message;
    }
  });
  refresh();
  setInterval(refresh, POLL_MS);
})();
