// A little behaviour for the supervision page: opt-in auto refresh, and replay buttons that say they work.
(function () {
  "use strict";
  var KEY = "lienthong-auto-refresh";
  var box = document.getElementById("auto-refresh");
  if (box) {
    box.checked = window.localStorage.getItem(KEY) === "1";
    box.addEventListener("change", function () {
      window.localStorage.setItem(KEY, box.checked ? "1" : "0");
    });
    window.setInterval(function () {
      if (box.checked && !document.querySelector("form.replay.busy")) { window.location.reload(); }
    }, 10000);
  }
  document.querySelectorAll("form.replay").forEach(function (form) {
    form.addEventListener("submit", function () {
      var button = form.querySelector("button");
      form.classList.add("busy");
      if (button) {
        button.textContent = button.getAttribute("data-busy") || button.textContent;
        window.setTimeout(function () { button.disabled = true; }, 0);
      }
    });
  });
})();
