// SLA countdowns: the server renders the time left; this keeps it current without a reload.
(function () {
  function tick() {
    document.querySelectorAll("time[data-countdown]").forEach(function (el) {
      var s = Math.floor((Date.parse(el.getAttribute("datetime")) - Date.now()) / 1000);
      if (isNaN(s)) return;
      if (s <= 0) { el.textContent = "overdue"; el.classList.add("overdue"); return; }
      var m = Math.floor(s / 60), h = Math.floor(m / 60);
      el.textContent = h ? h + " h " + String(m % 60).padStart(2, "0") + " min left" : (m % 60) + " min left";
    });
  }
  document.addEventListener("DOMContentLoaded", function () { tick(); setInterval(tick, 30000); });
})();
