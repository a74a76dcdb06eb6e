// Keyboard shortcuts and bulk selection for the reviewer page. No dependencies.
(function () {
  "use strict";
  var keys = { v: "verify", r: "reject", i: "needs-info", s: "skip" };
  var busy = false;
  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey || busy) return;
    var target = event.target;
    var tag = target && target.tagName;
    if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || (target && target.isContentEditable)) return;
    var id = keys[event.key];
    var button = id && document.getElementById(id);
    if (!button) return;
    event.preventDefault();
    busy = true;  // one key, one decision: no double submits while the next page loads
    button.click();
  });
  var all = document.getElementById("select-all");
  if (all) {
    all.addEventListener("change", function () {
      document.querySelectorAll("input[name=ids]").forEach(function (box) { box.checked = all.checked; });
    });
  }
})();
