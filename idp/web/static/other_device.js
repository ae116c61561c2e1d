// Polls the order about once a second, swaps in the new QR code and status text, and moves on
// when the order is complete. Without JavaScript the page reloads itself instead.
(function () {
  "use strict";
  var order = document.getElementById("order");
  if (!order) { return; }
  var url = order.getAttribute("data-collect-url");
  var qr = document.getElementById("qr");
  var sv = document.getElementById("status-sv");
  var en = document.getElementById("status-en");
  var status = document.getElementById("status");
  var lastText = sv.textContent;

  function show(view) {
    if (view.qr) {
      qr.innerHTML = view.qr;
      qr.hidden = false;
    } else {
      qr.hidden = true;
    }
    // Only touch the live region when the text changes, so screen readers announce changes once.
    if (view.message && view.message.sv !== lastText) {
      sv.textContent = view.message.sv;
      en.textContent = view.message.en;
      lastText = view.message.sv;
    }
    if (view.status === "failed") { status.classList.add("status-failed"); }
  }

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (response) { return response.json(); })
      .then(function (view) {
        show(view);
        if (view.status === "complete" && view.next) {
          window.location.assign(view.next);
        } else if (view.status === "failed") {
          window.location.reload();
        } else {
          window.setTimeout(poll, 1000);
        }
      })
      .catch(function () { window.setTimeout(poll, 2000); });
  }

  if (order.getAttribute("data-status") === "pending") { window.setTimeout(poll, 1000); }
}());
