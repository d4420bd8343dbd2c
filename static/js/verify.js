/* The verification of an analysis page: while one runs ([data-verification]), poll its status
 * JSON (window.studioFetchStatus, app.js), show its stage and progress, and reload the page when
 * it is done so its verdict shows. */
(function () {
  "use strict";

  var POLL_MS = 1500;

  function follow(node) {
    var url = node.getAttribute("data-status-url");
    var stage = node.querySelector("[data-verification-stage]");
    var percent = node.querySelector("[data-verification-percent]");
    var bar = node.querySelector("[data-verification-bar]");
    var failures = 0;
    function poll() {
      window.studioFetchStatus(url)
        .then(function (payload) {
          failures = 0;
          if (stage && payload.stage) stage.textContent = payload.stage;
          if (percent) percent.textContent = payload.progress + "%";
          if (bar) bar.style.width = Math.max(0, Math.min(100, payload.progress)) + "%";
          if (!payload.active) {
            window.location.reload();
            return;
          }
          window.setTimeout(poll, POLL_MS);
        })
        .catch(function () {
          failures += 1;
          window.setTimeout(poll, Math.min(30000, POLL_MS * Math.pow(2, failures)));
        });
    }
    window.setTimeout(poll, POLL_MS);
  }

  function start() {
    if (!window.fetch || !window.studioFetchStatus) return;
    document.querySelectorAll("[data-verification]").forEach(follow);
  }

  // This script is included with the panel, before app.js (which defines studioFetchStatus):
  // start once every deferred script has run.
  if (document.readyState === "complete") start();
  else document.addEventListener("DOMContentLoaded", start);
})();
