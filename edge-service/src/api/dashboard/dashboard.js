// Tillbridge dashboard: the summary, open exceptions (retry / resolve) and the latest records.
// No framework, no external assets. The token stays in sessionStorage (this tab only); data is
// written with textContent only.
(function () {
  "use strict";
  var $ = function (id) { return document.getElementById(id); };
  var store = window.sessionStorage;
  var timer = null;

  function status(text, bad) {
    var s = $("status");
    s.textContent = text || "";
    s.className = bad ? "bad" : "";
  }

  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    if (cls) { e.className = cls; }
    return e;
  }

  function api(method, path, body) {
    var opts = { method: method, headers: { "Authorization": "Bearer " + store.getItem("tb-token") } };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    return fetch(path, opts).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (j) {
        if (r.status === 401) { signOut(j.error || "the token was refused"); throw new Error("unauthorized"); }
        if (!r.ok) {
          var msg = (j.error || ("HTTP " + r.status)) + (j.field ? " (" + j.field + ")" : "");
          throw new Error(msg);
        }
        return j;
      });
    });
  }

  function signOut(why) {
    store.removeItem("tb-token");
    if (timer) { clearInterval(timer); timer = null; }
    $("board").hidden = true;
    $("signout").hidden = true;
    $("ready").hidden = true;
    $("signin").hidden = false;
    status(why ? "Signed out: " + why : "Signed out.", !!why);
    $("token").focus();
  }

  function card(dl, label, value, cls) {
    var d = el("div");
    d.appendChild(el("dt", label));
    d.appendChild(el("dd", value, cls));
    dl.appendChild(d);
  }

  function when(t) { return t ? String(t).replace("T", " ").replace(/(:\d\d)\.\d+Z$/, "$1 UTC") : ""; }

  function ms(v) { return v === null || v === undefined ? "–" : v + " ms"; }

  function showSummary(s) {
    var r = $("ready");
    r.hidden = false;
    r.textContent = s.ready ? "ready" : "not ready";
    r.className = "pill " + (s.ready ? "ok" : "bad");
    var dl = $("summary");
    dl.replaceChildren();
    var by = s.records.by_state;
    if (s.role) { card(dl, "This replica", s.role, s.role === "active" ? "ok" : ""); }
    card(dl, "Open exceptions", s.open_exceptions.total, s.open_exceptions.total > 0 ? "bad" : "ok");
    card(dl, "Stalled records", by.stalled, by.stalled > 0 ? "bad" : "ok");
    card(dl, "Failed records", by.failed, by.failed > 0 ? "bad" : "ok");
    card(dl, "Pending pushes", s.pending_pushes);
    card(dl, "Commands in flight", s.commands_in_flight);
    card(dl, "Push latency p50", ms(s.push_latency_ms.p50));
    card(dl, "Push latency p99", ms(s.push_latency_ms.p99));
    card(dl, "Budget (requests/s)", s.budget.requests_per_second);
    card(dl, "Records", s.records.total);
    card(dl, "Mapping errors", s.mapping.errors, s.mapping.errors > 0 ? "bad" : "ok");
    var ul = $("reasons");
    ul.replaceChildren();
    Object.keys(s.open_exceptions.by_reason).forEach(function (k) {
      var n = s.open_exceptions.by_reason[k];
      if (n > 0) { ul.appendChild(el("li", k.replace(/_/g, " ") + ": " + n)); }
    });
    if (!ul.children.length) { ul.appendChild(el("li", "none")); }
  }

  function act(path, body, label) {
    body.by = store.getItem("tb-who") || "dashboard";
    return api("POST", path, body).then(function (j) {
      status(label + ": " + (j.message || j.status));
      refresh();
    }).catch(function (e) { if (e.message !== "unauthorized") { status(label + " failed: " + e.message, true); } });
  }

  function exceptionRow(x) {
    var tr = el("tr");
    tr.appendChild(el("td", x.id));
    tr.appendChild(el("td", x.reason.replace(/_/g, " ")));
    tr.appendChild(el("td", x.subject));
    var what = el("td");
    what.appendChild(el("p", x.message));
    what.appendChild(el("p", x.guide, "guide"));
    tr.appendChild(what);
    tr.appendChild(el("td", when(x.raised_at)));
    var td = el("td");
    var retry = el("button", "Retry");
    retry.type = "button";
    retry.setAttribute("aria-label", "Retry exception " + x.id);
    retry.addEventListener("click", function () {
      retry.disabled = true;
      act("/api/exceptions/" + x.id + "/retry", {}, "Retry of exception " + x.id);
    });
    td.appendChild(retry);
    var f = el("form");
    var id = "note-" + x.id;
    var lab = el("label", "Note", "sr-only");
    lab.htmlFor = id;
    var note = el("input");
    note.id = id;
    note.required = true;
    note.maxLength = 2000;
    note.placeholder = "what was done";
    var resolve = el("button", "Resolve");
    resolve.type = "submit";
    resolve.setAttribute("aria-label", "Resolve exception " + x.id);
    f.appendChild(lab);
    f.appendChild(note);
    f.appendChild(resolve);
    f.addEventListener("submit", function (ev) {
      ev.preventDefault();
      act("/api/exceptions/" + x.id + "/resolve", { note: note.value }, "Resolution of exception " + x.id);
    });
    td.appendChild(f);
    tr.appendChild(td);
    return tr;
  }

  function recordRow(r) {
    var tr = el("tr");
    tr.appendChild(el("td", r.id));
    tr.appendChild(el("td", r.kind.replace(/_/g, " ")));
    tr.appendChild(el("td", r.origin));
    var st = r.state + (r.reason ? " — " + r.reason.replace(/_/g, " ") : "") +
      (r.exception ? " (exception " + r.exception + ")" : "");
    tr.appendChild(el("td", st, r.state === "stalled" || r.state === "failed" ? "bad" : ""));
    tr.appendChild(el("td", r.detail));
    tr.appendChild(el("td", when(r.updated_at)));
    return tr;
  }

  function refresh() {
    var state = $("state-filter").value;
    var q = "/api/records?limit=25" + (state ? "&state=" + encodeURIComponent(state) : "");
    return Promise.all([
      api("GET", "/api/summary"),
      api("GET", "/api/exceptions?status=open&limit=100"),
      api("GET", q)
    ]).then(function (all) {
      showSummary(all[0]);
      var tb = $("exceptions").tBodies[0];
      tb.replaceChildren();
      all[1].items.forEach(function (x) { tb.appendChild(exceptionRow(x)); });
      $("no-exceptions").hidden = all[1].items.length > 0;
      var rb = $("records").tBodies[0];
      rb.replaceChildren();
      all[2].items.forEach(function (r) { rb.appendChild(recordRow(r)); });
      $("records-total").textContent = "Showing " + all[2].items.length + " of " + all[2].total + " records.";
    }).catch(function (e) { if (e.message !== "unauthorized") { status("Could not load: " + e.message, true); } });
  }

  function start() {
    $("signin").hidden = true;
    $("board").hidden = false;
    $("signout").hidden = false;
    refresh().then(function () { if (!$("status").className) { status("Loaded."); } });
    if (!timer) { timer = setInterval(refresh, 15000); }
  }

  document.addEventListener("DOMContentLoaded", function () {
    $("signin").addEventListener("submit", function (ev) {
      ev.preventDefault();
      store.setItem("tb-token", $("token").value.trim());
      store.setItem("tb-who", $("who").value.trim());
      $("token").value = "";
      start();
    });
    $("signout").addEventListener("click", function () { signOut(); });
    $("refresh").addEventListener("click", function () { refresh(); });
    $("state-filter").addEventListener("change", function () { refresh(); });
    if (store.getItem("tb-token")) { start(); } else { $("token").focus(); }
  });
})();
