// The preference page's time-zone suggestion: the zone the browser reports, offered as a
// button that fills the picker.  Nothing changes until the reader saves; with JavaScript
// off the line stays hidden and the page works the same.
(function () {
  "use strict";
  // tz database links (old or alternative names, as browsers often report them) -> the
  // picker's place; filled in by the server.
  var LINKS = /*LINKS*/{};
  var select = document.getElementById("timezone");
  var box = document.getElementById("zone-suggestion");
  if (!select || !box || !window.Intl) return;
  var zone;
  try {
    zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  } catch (e) {
    return;
  }
  zone = LINKS[zone] || zone;
  var offered = Array.prototype.some.call(select.options, function (o) { return o.value === zone; });
  if (!zone || !offered || zone === select.value) return;
  box.querySelector(".zone-name").textContent = zone.replace(/_/g, " ");
  box.hidden = false;
  box.querySelector("button").addEventListener("click", function () {
    select.value = zone;
    box.querySelector(".zone-done").hidden = false;
    this.hidden = true;
    select.focus();
  });
})();
