// The owner's and installer's page (docs/web.md). No framework, nothing from outside the box:
// every call goes to this fdmd, with the session cookie, and every change carries the session's
// CSRF token. Data is put in the page with textContent only.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const S = window.FDMD_STRINGS || { en: {} };
  let lang = "en";
  let csrf = null;
  const sections = ["login", "setpw", "status", "card", "registers", "reports"];

  function t(key) {
    return (S[lang] && S[lang][key]) || S.en[key] || key;
  }
  function applyLang(l) {
    lang = S[l] ? l : "en";
    document.documentElement.lang = lang;
    $("lang").value = lang;
    document.querySelectorAll("[data-t]").forEach((el) => { el.textContent = t(el.dataset.t); });
    try { localStorage.setItem("fdmd_lang", lang); } catch (e) { /* private mode */ }
  }
  function notice(text) { $("notice").textContent = text || ""; }
  function show(name) {
    sections.forEach((s) => { $(s).hidden = s !== name; });
    document.querySelectorAll("nav a").forEach((a) => {
      if (a.getAttribute("href") === "#" + name) { a.setAttribute("aria-current", "page"); } else { a.removeAttribute("aria-current"); }
    });
  }
  function signedIn(yes) {
    $("nav").hidden = !yes;
    $("logout").hidden = !yes;
  }

  async function api(method, path, body, accept) {
    const headers = { "Accept": accept || "application/json" };
    if (method !== "GET") {
      headers["Content-Type"] = "application/json";
      if (csrf) { headers["X-CSRF-Token"] = csrf; }
    }
    const r = await fetch(path, {
      method, headers, credentials: "same-origin", cache: "no-store",
      body: body === undefined ? undefined : JSON.stringify(body)
    });
    const type = r.headers.get("Content-Type") || "";
    const data = type.startsWith("application/json") ? await r.json().catch(() => null) : await r.text();
    if (r.status === 401 && !path.startsWith("/ui/api/login")) {
      csrf = null; signedIn(false); show("login");
    }
    return { status: r.status, ok: r.ok, data };
  }
  function message(res) {
    if (res.data && typeof res.data === "object") {
      return res.data.message || JSON.stringify(res.data);
    }
    return String(res.data || res.status);
  }
  function li(parent, text, cls) {
    const el = document.createElement("li");
    el.textContent = text;
    if (cls) { el.className = cls; }
    parent.appendChild(el);
    return el;
  }
  function list(ul, items, render) {
    ul.replaceChildren();
    if (!items || items.length === 0) { li(ul, t("none")); return; }
    items.forEach((i) => li(ul, render(i)));
  }

  // Sizes in the units people read (decimal: kB, MB, GB), in the page's language.
  function bytes(n) {
    if (n === null || n === undefined) { return t("unknown"); }
    const units = [[1e12, "TB"], [1e9, "GB"], [1e6, "MB"], [1e3, "kB"]];
    const fmt = new Intl.NumberFormat(lang, { maximumFractionDigits: 1 });
    for (const [size, unit] of units) {
      if (n >= size) { return fmt.format(n / size) + " " + unit; }
    }
    return fmt.format(n) + " B";
  }
  function count(n) {
    return n === null || n === undefined ? t("unknown") : new Intl.NumberFormat(lang).format(n);
  }
  function fillPairs(dl, pairs) {
    dl.replaceChildren();
    pairs.forEach(([key, value]) => {
      const dt = document.createElement("dt"); dt.textContent = t(key);
      const dd = document.createElement("dd"); dd.textContent = value;
      dl.append(dt, dd);
    });
  }
  function money(text) { return text + " €"; }

  function journalPairs(j, st) {
    const pairs = [
      ["j_last_seq", count(j.last_seq)],
      ["j_usage", j.usage === null || j.usage === undefined ? t("no_limit") : new Intl.NumberFormat(lang, { style: "percent", maximumFractionDigits: 1 }).format(j.usage)],
      ["j_free", bytes(j.free_bytes)]
    ];
    if (st) {
      pairs.push(["j_size", bytes(st.journal_bytes)]);
      pairs.push(["j_per_day", st.bytes_per_day === null ? t("unknown") : bytes(st.bytes_per_day) + " (" + t("j_window").replace("{n}", st.window_days) + ")"]);
      let lasts = t("unknown");
      if (st.days_left !== null && st.days_left > 3650) {
        lasts = t("j_years") + " (" + t(st.room_bound === "max_size" ? "j_bound_limit" : "j_bound_disk") + ")";
      } else if (st.days_left !== null) {
        lasts = t("j_days").replace("{n}", count(st.days_left)) + " (" + t(st.room_bound === "max_size" ? "j_bound_limit" : "j_bound_disk") + ")";
      } else if (st.bytes_per_day === 0) {
        lasts = t("j_nothing_written");
      }
      pairs.push(["j_lasts", lasts]);
    }
    return pairs;
  }

  // Today's turnover as stacked bars per hour, one colour per VAT rate; negative amounts
  // (refunds) go below the axis. Built as SVG elements (no inline style: the CSP forbids it;
  // colours come from app.css). Numbers are converted only to draw.
  const SVG = "http://www.w3.org/2000/svg";
  function svgEl(name, attrs, parent) {
    const el = document.createElementNS(SVG, name);
    Object.entries(attrs).forEach(([k, v]) => el.setAttribute(k, String(v)));
    if (parent) { parent.appendChild(el); }
    return el;
  }
  function rateName(r) { return r === "unsplit" ? t("rate_unsplit") : t("rate") + " " + r; }
  function drawChart(d) {
    $("turnover-total").textContent = money(d.total) + " · " + t(d.events === 1 ? "tickets_one" : "tickets").replace("{n}", count(d.events));
    const rates = d.rates || [];
    const byHour = new Map((d.hours || []).map((h) => [h.hour, h]));
    let top = 0, bottom = 0;
    byHour.forEach((h) => {
      let pos = 0, neg = 0;
      Object.values(h.rates).forEach((v) => { const x = Number(v); if (x >= 0) { pos += x; } else { neg += x; } });
      top = Math.max(top, pos); bottom = Math.min(bottom, neg);
    });
    if (top === 0 && bottom === 0) { top = 1; }
    const W = 640, H = 240, L = 56, R = 8, T = 12, B = 28;
    const plotH = H - T - B, slot = (W - L - R) / 24;
    const y = (v) => T + (top - v) / (top - bottom) * plotH;
    const svg = svgEl("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "aria-labelledby": "chart-caption", class: "chart" });
    svgEl("line", { x1: L, x2: W - R, y1: y(0), y2: y(0), class: "axis" }, svg);
    [top, bottom].filter((v) => v !== 0).forEach((v) => {
      svgEl("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }, svg);
      const label = svgEl("text", { x: L - 4, y: y(v) + 4, "text-anchor": "end", class: "tick" }, svg);
      label.textContent = new Intl.NumberFormat(lang, { maximumFractionDigits: 0 }).format(v) + " €";
    });
    for (let hour = 0; hour < 24; hour += 1) {
      const x = L + hour * slot;
      if (hour % 3 === 0) {
        const label = svgEl("text", { x: x + slot / 2, y: H - 8, "text-anchor": "middle", class: "tick" }, svg);
        label.textContent = String(hour).padStart(2, "0") + "h";
      }
      const h = byHour.get(hour);
      if (!h) { continue; }
      let up = 0, down = 0;
      rates.forEach((r, i) => {
        const v = Number(h.rates[r] || 0);
        if (v === 0) { return; }
        const from = v > 0 ? up : down;
        const to = from + v;
        if (v > 0) { up = to; } else { down = to; }
        const bar = svgEl("rect", { x: x + 2, width: Math.max(slot - 4, 1), y: Math.min(y(from), y(to)), height: Math.max(Math.abs(y(from) - y(to)), 1), class: "rate-" + (i % 6) }, svg);
        const tip = svgEl("title", {}, bar);
        tip.textContent = String(hour).padStart(2, "0") + "h " + rateName(r) + ": " + money(h.rates[r]);
      });
    }
    $("chart").replaceChildren(svg);
    $("chart-caption").textContent = t("chart_caption").replace("{date}", d.date).replace("{total}", money(d.total));
    const legend = $("chart-legend");
    legend.replaceChildren();
    rates.forEach((r, i) => {
      const item = document.createElement("li");
      const swatch = document.createElement("span"); swatch.className = "swatch rate-" + (i % 6);
      const name = document.createElement("span"); name.textContent = rateName(r);
      item.append(swatch, name);
      legend.appendChild(item);
    });
    const head = $("turnover-head");
    head.replaceChildren();
    [t("hour")].concat(rates.map(rateName), [t("total")]).forEach((text) => {
      const th = document.createElement("th"); th.scope = "col"; th.textContent = text; head.appendChild(th);
    });
    const body = $("turnover-body");
    body.replaceChildren();
    (d.hours || []).forEach((h) => {
      const tr = document.createElement("tr");
      const th = document.createElement("th"); th.scope = "row";
      th.textContent = String(h.hour).padStart(2, "0") + ":00–" + String(h.hour).padStart(2, "0") + ":59";
      tr.appendChild(th);
      rates.map((r) => h.rates[r] || "0.00").concat([h.total]).forEach((v) => {
        const td = document.createElement("td"); td.className = "num"; td.textContent = money(v); tr.appendChild(td);
      });
      body.appendChild(tr);
    });
  }

  async function loadStatus() {
    const [res, st, today] = await Promise.all([
      api("GET", "/v1/status"), api("GET", "/ui/api/storage"), api("GET", "/ui/api/today")
    ]);
    if (!res.ok) { notice(message(res)); return; }
    const doc = res.data;
    $("overall").textContent = doc.status;
    $("overall").className = doc.status;
    $("version").textContent = doc.version ? "(" + doc.version + ")" : "";
    const ul = $("problems");
    ul.replaceChildren();
    if (!doc.problems || doc.problems.length === 0) { li(ul, t("no_problems")); }
    (doc.problems || []).forEach((p) => {
      const el = li(ul, "", "problem");
      const code = document.createElement("code"); code.textContent = p.code;
      const msg = document.createElement("span"); msg.textContent = " " + p.message + " ";
      const todo = document.createElement("em"); todo.textContent = t("todo_" + p.code) === "todo_" + p.code ? "" : t("todo_" + p.code);
      el.append(code, msg, todo);
    });
    fillPairs($("journal"), journalPairs(doc.journal || {}, st.ok ? st.data : null));
    if (today.ok) { drawChart(today.data); } else { $("turnover-total").textContent = message(today); }
    const tables = await api("GET", "/v1/tables");
    list($("tables"), tables.ok && Array.isArray(tables.data) ? tables.data : [], (x) =>
      (x.table !== null && x.table !== undefined ? t("table") + " " + x.table : t("check") + " " + x.check) +
      " · " + money(x.total) + (x.operator ? " · " + x.operator : ""));
    const staff = await api("GET", "/v1/staff/presence");
    const sl = staff.ok && staff.data && Array.isArray(staff.data.clocked_in) ? staff.data.clocked_in : [];
    list($("staff"), sl, (x) => x.operator + " · " + t("since") + " " + String(x.since || "").slice(11, 16) + (x.register ? " · " + x.register : ""));
  }

  async function loadCard() {
    const res = await api("GET", "/v1/signer");
    const state = res.data && res.data.state ? res.data.state : {};
    $("card-state").textContent = state.state || "";
    fillPairs($("card-info"), res.ok
      ? [["card_id", res.data.vsc_id || t("unknown")], ["card_algorithm", res.data.algorithm || t("unknown")], ["card_certified", res.data.certified ? t("yes") : t("no")]]
      : [["error", message(res)]]);
  }

  async function loadRegisters() {
    const body = $("enrolled");
    body.replaceChildren();
    for (const kind of ["registers", "stations"]) {
      const res = await api("GET", "/v1/admin/" + kind);
      if (!res.ok) { continue; }
      res.data.forEach((e) => {
        const tr = document.createElement("tr");
        [t(kind === "registers" ? "register" : "station"), e.id, e.active ? t("yes") : t("no"), e.enrolled_at || ""].forEach((v) => {
          const td = document.createElement("td"); td.textContent = v; tr.appendChild(td);
        });
        const td = document.createElement("td");
        if (e.active) {
          const b = document.createElement("button");
          b.type = "button"; b.className = "danger"; b.textContent = t("revoke");
          b.setAttribute("aria-label", t("revoke") + " " + e.id);
          b.addEventListener("click", async () => {
            const r = await api("DELETE", "/v1/admin/" + kind + "/" + encodeURIComponent(e.id));
            notice(r.ok ? "" : t("refused") + ": " + message(r));
            loadRegisters();
          });
          td.appendChild(b);
        }
        tr.appendChild(td);
        body.appendChild(tr);
      });
    }
    const dev = await api("GET", "/v1/admin/devices");
    $("devices").textContent = dev.ok ? JSON.stringify(dev.data, null, 2) : message(dev);
  }

  async function enrol(ev) {
    ev.preventDefault();
    const kind = $("enrol-kind").value;
    const id = $("enrol-id").value.trim();
    const res = await api("POST", "/v1/admin/" + kind, { id });
    if (!res.ok) { notice(t("refused") + ": " + message(res)); return; }
    notice("");
    const c = res.data;
    const settings = {
      id: c.id, kind: c.kind, http: location.origin, mqtt_host: location.hostname,
      mqtt_username: c.mqtt_username, mqtt_password: c.mqtt_password, http_token: c.http_token
    };
    $("creds-text").textContent = JSON.stringify(settings, null, 2);
    const qr = await api("POST", "/ui/api/qr", { text: JSON.stringify(settings) }, "image/svg+xml");
    if (qr.ok) {
      $("creds-qr").src = "data:image/svg+xml," + encodeURIComponent(qr.data);
      $("creds-qr").alt = t("qr_alt") + " " + c.id;
    }
    $("creds").hidden = false;
    $("enrol-id").value = "";
    loadRegisters();
  }

  async function deviceAction(action) {
    const id = encodeURIComponent($("dev-id").value.trim());
    let res;
    if (action === "history") {
      res = await api("GET", "/v1/admin/devices/register/" + id + "/history");
    } else if (action === "link") {
      res = await api("POST", "/v1/admin/devices/registers/" + id + "/link", { production_number: $("dev-production").value.trim() });
    } else {
      const body = { reason: $("dev-reason").value };
      const note = $("dev-note").value.trim();
      if (note) { body.note = note; }
      res = await api("POST", "/v1/admin/devices/registers/" + id + "/deactivate", body);
    }
    $("device-out").textContent = res.ok ? JSON.stringify(res.data, null, 2) : t("refused") + ": " + message(res);
    if (action !== "history" && res.ok) { loadRegisters(); }
  }

  async function report(ev) {
    ev.preventDefault();
    const body = { kind: $("report-kind").value };
    const reg = $("report-register").value.trim();
    if (reg) { body.register = reg; }
    const res = await api("POST", "/v1/admin/reports?format=text", body, "text/plain");
    $("report-out").textContent = res.ok ? res.data : t("refused") + ": " + message(res);
  }

  async function threshold(ev) {
    ev.preventDefault();
    const res = await api("GET", "/v1/admin/reports/threshold?year=" + encodeURIComponent($("year").value));
    $("threshold-out").textContent = res.ok ? JSON.stringify(res.data, null, 2) : message(res);
  }

  function seqQuery() {
    const from = $("from-seq").value || "1";
    const to = $("to-seq").value;
    return "from_seq=" + encodeURIComponent(from) + (to ? "&to_seq=" + encodeURIComponent(to) : "");
  }
  function dateQuery() {
    const from = $("from-date").value;
    const to = $("to-date").value || from;
    return "from_date=" + encodeURIComponent(from) + "&to_date=" + encodeURIComponent(to);
  }
  function exportLink() {
    $("export-link").href = "/v1/journal/export?" + seqQuery();
    $("export-date-link").href = "/v1/journal/export?" + dateQuery();
    $("export-date-link").download = "fdmd-export-" + $("from-date").value + "-" + ($("to-date").value || $("from-date").value) + ".jsonl";
  }
  async function checkExport(query) {
    const out = $("export-verdict");
    out.className = "";
    out.textContent = t("checking");
    const res = await api("GET", "/ui/api/export/check?" + query);
    out.replaceChildren();
    if (!res.ok) { out.textContent = t("refused") + ": " + message(res); return; }
    const v = res.data;
    const head = document.createElement("strong");
    if (v.ok) {
      out.className = "verdict-ok";
      head.textContent = t("verdict_ok");
      const dl = document.createElement("dl");
      fillPairs(dl, [
        ["v_records", count(v.records)], ["v_first", count(v.first_seq)], ["v_last", count(v.last_seq)],
        ["v_fiscal", count(v.fiscal_events)], ["v_chain", t("ok")], ["v_signatures", t("ok")],
        ["v_signers", (v.signers || []).join(", ")], ["v_last_hash", v.last_hash || ""]
      ]);
      out.append(head, dl);
    } else {
      out.className = "verdict-bad";
      head.textContent = t("verdict_bad");
      const p = document.createElement("p"); p.textContent = v.error;
      out.append(head, p);
    }
  }
  async function replaceCard(ev) {
    ev.preventDefault();
    const res = await api("POST", "/v1/admin/devices/card/replace", { new_vsc_id: $("new-vsc").value.trim(), reason: $("replace-reason").value });
    $("replace-result").textContent = res.ok
      ? t("replace_done").replace("{old}", res.data.old_vsc_id || "").replace("{new}", res.data.new_vsc_id || "")
      : t("refused") + ": " + message(res);
    if (res.ok) { $("new-vsc").value = ""; }
  }

  async function route() {
    if (!csrf) { show("login"); return; }
    const name = (location.hash || "#status").slice(1);
    const target = ["status", "card", "registers", "reports"].includes(name) ? name : "status";
    show(target);
    if (target === "status") { await loadStatus(); }
    if (target === "card") { await loadCard(); }
    if (target === "registers") { await loadRegisters(); }
    document.body.dataset.page = target;
    document.body.dataset.loaded = String(Date.now());
  }

  async function start() {
    let saved = null;
    try { saved = localStorage.getItem("fdmd_lang"); } catch (e) { /* private mode */ }
    applyLang(saved || (navigator.language || "en").slice(0, 2));
    $("year").value = new Date().getFullYear();
    const d = new Date();
    const today = d.getFullYear() + "-" + String(d.getMonth() + 1).padStart(2, "0") + "-" + String(d.getDate()).padStart(2, "0");
    $("from-date").value = today;
    $("to-date").value = today;
    exportLink();
    $("lang").addEventListener("change", () => { applyLang($("lang").value); if (csrf) { route(); } });
    $("login-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const res = await api("POST", "/ui/api/login", { secret: $("secret").value });
      $("secret").value = "";
      if (!res.ok) { notice(t("refused") + ": " + message(res)); return; }
      csrf = res.data.csrf;
      notice(t("signed_in"));
      if (res.data.must_set_password) { show("setpw"); return; }
      signedIn(true);
      route();
    });
    $("setpw-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const res = await api("POST", "/ui/api/password", { password: $("newpw").value });
      $("newpw").value = "";
      if (!res.ok) { notice(t("refused") + ": " + message(res)); return; }
      notice(t("password_saved"));
      signedIn(true);
      route();
    });
    $("logout").addEventListener("click", async () => {
      await api("POST", "/ui/api/logout", {});
      csrf = null;
      signedIn(false);
      notice(t("signed_out"));
      show("login");
    });
    $("pin-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const pin = $("pin").value;
      $("pin").value = "";
      const res = await api("POST", "/v1/admin/signer/pin", { pin });
      $("pin-result").textContent = res.ok ? res.data.message : t("refused") + ": " + message(res);
      loadCard();
    });
    $("enrol-form").addEventListener("submit", enrol);
    $("device-form").addEventListener("submit", (ev) => { ev.preventDefault(); deviceAction("link"); });
    $("dev-deactivate").addEventListener("click", () => deviceAction("deactivate"));
    $("dev-history").addEventListener("click", () => deviceAction("history"));
    $("report-form").addEventListener("submit", report);
    $("print").addEventListener("click", () => window.print());
    $("threshold-form").addEventListener("submit", threshold);
    $("from-seq").addEventListener("input", exportLink);
    $("to-seq").addEventListener("input", exportLink);
    $("from-date").addEventListener("input", exportLink);
    $("to-date").addEventListener("input", exportLink);
    $("check-date").addEventListener("click", () => checkExport(dateQuery()));
    $("check-seq").addEventListener("click", () => checkExport(seqQuery()));
    $("export-date-form").addEventListener("submit", (ev) => ev.preventDefault());
    $("export-form").addEventListener("submit", (ev) => ev.preventDefault());
    $("replace-form").addEventListener("submit", replaceCard);
    $("refresh").addEventListener("click", loadStatus);
    window.addEventListener("hashchange", route);
    const s = await api("GET", "/ui/api/session");
    if (s.ok) {
      csrf = s.data.csrf;
      if (s.data.must_set_password) { show("setpw"); return; }
      signedIn(true);
    }
    route();
  }
  start();
}());
