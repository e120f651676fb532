// alert-pipeline web UI: the few behaviours that need a script (pages work without it).
// - [data-refresh] regions reload in place every data-interval seconds (the URL keeps the filter), unless
//   paused, hidden, or the keyboard focus is inside them (so a refresh never pulls the list from under you);
// - "/" focuses the filter; selects marked data-autosubmit submit their form; forms with data-confirm ask first.
(function () {
  "use strict";
  function refresh() {
    var pause = document.getElementById("pause-refresh");
    if ((pause && pause.checked) || document.hidden || !window.htmx) { return; }
    document.querySelectorAll("[data-refresh]").forEach(function (region) {
      if (region.contains(document.activeElement)) { return; }
      window.htmx.ajax("GET", region.getAttribute("data-refresh"), { target: region, swap: "outerHTML" });
    });
  }
  var region = document.querySelector("[data-refresh]");
  if (region) {
    setInterval(refresh, (parseInt(region.getAttribute("data-interval"), 10) || 30) * 1000);
  }
  document.addEventListener("keydown", function (event) {
    var tag = document.activeElement ? document.activeElement.tagName : "";
    if (event.key === "/" && !/^(INPUT|TEXTAREA|SELECT)$/.test(tag)) {
      var filter = document.getElementById("filter");
      if (filter) { event.preventDefault(); filter.focus(); }
    }
  });
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { event.preventDefault(); }
  }, true);
})();
