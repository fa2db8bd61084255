// The board's only script: follows /events (server-sent events, no polling), swaps in the
// running auctions, prepends results as they are published, and ticks the countdowns.
// Everything it shows was rendered by the server; without it the page still reads.
(function () {
  "use strict";
  var body = document.body;
  var offset = Number(body.getAttribute("data-server-now")) - Date.now();
  var live = document.getElementById("live");
  var lang = document.getElementById("lang");

  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function tick() {
    var now = Date.now() + offset;
    var items = document.querySelectorAll("[data-deadline]");
    for (var i = 0; i < items.length; i++) {
      var left = Math.max(0, Math.floor((Number(items[i].getAttribute("data-deadline")) - now) / 1000));
      var h = Math.floor(left / 3600), m = Math.floor(left % 3600 / 60), s = left % 60;
      items[i].textContent = (h > 0 ? h + ":" + pad(m) : m) + ":" + pad(s);
    }
  }

  if (lang) {
    lang.hidden = false;
    if (localStorage.getItem("board-lang") === "zh") { body.classList.add("zh-only"); }
    lang.addEventListener("click", function () {
      body.classList.toggle("zh-only");
      localStorage.setItem("board-lang", body.classList.contains("zh-only") ? "zh" : "both");
    });
  }

  if (window.EventSource && document.getElementById("running")) {
    var source = new EventSource("/events");
    source.addEventListener("open", function () {
      live.className = "live on";
      live.innerHTML = "实时<span class=\"en\"> live</span>";
    });
    source.addEventListener("error", function () {
      live.className = "live";
      live.innerHTML = "重新连接中<span class=\"en\"> reconnecting</span>";
    });
    source.addEventListener("hello", function (e) {
      offset = JSON.parse(e.data).now - Date.now();
      tick();
    });
    source.addEventListener("auctions", function (e) {
      document.getElementById("running").innerHTML = e.data;
      tick();
    });
    source.addEventListener("settlement", function (e) {
      var holder = document.createElement("div");
      holder.innerHTML = e.data;
      var card = holder.firstElementChild;
      if (!card || document.getElementById(card.id)) { return; }
      var empty = document.getElementById("no-results");
      if (empty) { empty.remove(); }
      card.classList.add("fresh");
      var results = document.getElementById("results");
      results.insertBefore(card, results.firstChild);
    });
  }
  tick();
  setInterval(tick, 250);
})();
