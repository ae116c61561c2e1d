// Polls the order about once a second, swaps in the new QR code and status text, and moves on
// when the order is complete. Without JavaScript the page reloads itself instead.
(function () {
  "use strict";
  var order = document.getElementById("order");
  if (!order) { return; }
  var url = order.getAttribute("data-collect-url");
  var qr = document.getElementById("qr");
  var status = document.getElementById("status");
  var restart = document.getElementById("restart");
  var autostart = document.getElementById("autostart");
  var english = document.documentElement.lang === "en";

  // The QR image comes with a fixed width and height; a viewBox lets CSS scale it down on a
  // narrow screen instead of cutting off its edge (a cut QR code does not scan).
  function scalable() {
    var svg = qr.querySelector("svg");
    if (!svg || svg.hasAttribute("viewBox")) { return; }
    var width = svg.getAttribute("width");
    var height = svg.getAttribute("height");
    if (width && height) { svg.setAttribute("viewBox", "0 0 " + width + " " + height); }
  }

  function show(view) {
    if (view.qr) {
      qr.innerHTML = view.qr;
      scalable();
      qr.hidden = false;
    } else {
      qr.hidden = true;
    }
    // Only touch the live region when the text changes, so that a screen reader announces each
    // change once (and not every second).
    var text = view.message ? (english ? view.message.en : view.message.sv) : "";
    if (text && status.textContent !== text) { status.textContent = text; }
    if (view.status === "failed") {
      status.classList.add("status-failed");
      restart.hidden = false;
      autostart.hidden = true;
    }
  }

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) { return response.json(); })
      .then(function (view) {
        show(view);
        if (view.status === "complete" && view.next) {
          window.location.assign(view.next);
        } else if (view.status !== "failed") {
          window.setTimeout(poll, 1000);
        }
        // Failed: the message stays on screen (and is announced) with "Start again" beside it.
      })
      .catch(function () { window.setTimeout(poll, 2000); });
  }

  scalable();
  if (order.getAttribute("data-status") === "pending") { window.setTimeout(poll, 1000); }
}());
