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
  function fillDl(dl, obj) {
    dl.replaceChildren();
    Object.entries(obj || {}).forEach(([k, v]) => {
      const dt = document.createElement("dt"); dt.textContent = k;
      const dd = document.createElement("dd"); dd.textContent = typeof v === "object" ? JSON.stringify(v) : String(v);
      dl.append(dt, dd);
    });
  }
  function list(ul, items, render) {
    ul.replaceChildren();
    if (!items || items.length === 0) { li(ul, t("none")); return; }
    items.forEach((i) => li(ul, render(i)));
  }

  async function loadStatus() {
    const res = await api("GET", "/v1/status");
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
    fillDl($("journal"), doc.journal);
    const tables = await api("GET", "/v1/tables");
    const tl = tables.ok && tables.data ? (tables.data.tables || tables.data) : [];
    list($("tables"), Array.isArray(tl) ? tl : [], (x) => (x.table || x.id || "") + " " + (x.total || ""));
    const staff = await api("GET", "/v1/staff/presence");
    const sl = staff.ok && staff.data ? (staff.data.present || staff.data.staff || staff.data) : [];
    list($("staff"), Array.isArray(sl) ? sl : [], (x) => x.name || x.staff || x.id || JSON.stringify(x));
  }

  async function loadCard() {
    const res = await api("GET", "/v1/signer");
    const state = res.data && res.data.state ? res.data.state : {};
    $("card-state").textContent = state.state || "";
    fillDl($("card-info"), res.ok ? { vsc_id: res.data.vsc_id, algorithm: res.data.algorithm, certified: res.data.certified } : { error: message(res) });
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

  function exportLink() {
    const from = $("from-seq").value || "1";
    const to = $("to-seq").value;
    $("export-link").href = "/v1/journal/export?from_seq=" + encodeURIComponent(from) + (to ? "&to_seq=" + encodeURIComponent(to) : "");
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
    $("lang").addEventListener("change", () => applyLang($("lang").value));
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
