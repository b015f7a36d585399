// Live updates for the federation web UI. The pages are complete without
// this script; it follows the watch feed (/ui/events, authenticated by the
// session cookie) and updates the rows of what changed in place.
(function () {
  "use strict";
  var feed = document.body && document.body.getAttribute("data-live");
  if (!feed || !window.EventSource) {
    return;
  }
  var live = document.getElementById("live");
  var symbols = { online: "\u25CF", degraded: "\u25B2", offline: "\u25A0" };

  function say(text) {
    if (live) {
      live.textContent = text;
    }
  }

  function badge(kind, status) {
    var span = document.createElement("span");
    span.className = "badge " + kind + "-" + status;
    span.setAttribute("data-status", status);
    if (kind === "status") {
      var symbol = document.createElement("span");
      symbol.className = "symbol";
      symbol.setAttribute("aria-hidden", "true");
      symbol.textContent = symbols[status] || "";
      span.appendChild(symbol);
      span.appendChild(document.createTextNode(" "));
    }
    var word = document.createElement("span");
    word.className = "word";
    word.textContent = status;
    span.appendChild(word);
    return span;
  }

  function flash(el) {
    el.classList.remove("changed");
    // Restart the highlight.
    void el.offsetWidth;
    el.classList.add("changed");
  }

  function replaceBadge(cell, kind, status) {
    var old = cell.querySelector(".badge");
    var fresh = badge(kind, status);
    if (old) {
      cell.replaceChild(fresh, old);
    } else {
      cell.insertBefore(fresh, cell.firstChild);
    }
  }

  function cells(selector, field) {
    return document.querySelectorAll(selector + ' [data-field="' + field + '"]');
  }

  function projectStatus(data) {
    var sel = '[data-slug="' + CSS.escape(data.slug) + '"]';
    cells(sel, "status").forEach(function (cell) {
      replaceBadge(cell, "status", data.to);
      flash(cell);
    });
    if (data.last_heartbeat_at) {
      cells(sel, "last-seen").forEach(function (cell) {
        var t = document.createElement("time");
        t.setAttribute("datetime", data.last_heartbeat_at);
        t.textContent = new Date(data.last_heartbeat_at).toISOString().slice(0, 19).replace("T", " ") + " UTC";
        cell.textContent = "";
        cell.appendChild(t);
      });
    }
    say("Hub " + data.slug + " is now " + data.to + " (was " + data.from + ").");
  }

  function spokeChange(data) {
    var row = document.querySelector('[data-spoke="' + CSS.escape(data.id) + '"]');
    if (!row) {
      return false;
    }
    var cell = row.querySelector('[data-field="status"]');
    if (cell) {
      replaceBadge(cell, "spoke", data.status);
      flash(cell);
    }
    say("Spoke " + data.instance_code + " is now " + data.status + "; reload for its actions.");
    return true;
  }

  var stale = 0;
  function other(type) {
    stale += 1;
    say(stale + " other change(s) since this page loaded (" + type + "); reload to see them.");
  }

  var source = new EventSource(feed);
  source.onmessage = function (message) {
    var ev;
    try {
      ev = JSON.parse(message.data);
    } catch (e) {
      return;
    }
    var data = ev.data || {};
    if (ev.type === "federation.project.status" && data.slug) {
      projectStatus(data);
    } else if (ev.type && ev.type.indexOf("federation.spoke.") === 0 && data.id) {
      if (!spokeChange(data)) {
        other(ev.type);
      }
    } else if (ev.type) {
      other(ev.type);
    }
  };
  source.onopen = function () {
    document.body.setAttribute("data-live-state", "open");
  };
  source.onerror = function () {
    document.body.setAttribute("data-live-state", "reconnecting");
  };
})();
