/* Tiny shared behaviour for every page. Page-specific scripts live in their own templates.
 *
 * - [data-nav-toggle]: opens/closes the main navigation on phones.
 * - .account-menu (<details>): closes when clicking elsewhere or pressing Escape.
 * - [data-tabs]: a tab group. Inside it, buttons/links with class .tab and
 *   data-tab="<panel id>" show the .tab-panel with that id and hide its siblings; the chosen
 *   tab is kept in the URL hash so a reload or a shared link opens the same tab.
 * - form[data-confirm="question"]: asks for confirmation before submitting.
 * - [data-submit-once] forms: disable their submit buttons after the first submit (uploads).
 * - window.studioFetchStatus(url): a promise of a status JSON (no cache, HTTP errors rejected).
 * - [data-poll-url]: a job a worker is doing (an upload being inspected or converted): its
 *   status JSON is polled; [data-poll-message] shows its message; once it is no longer
 *   "processing", a [data-poll-reload] element reloads the page to show the result.
 * - [data-copy-from="selector"]: a button that copies that input's value to the clipboard.
 * - .meter-fill[data-percent], [data-width]: set a bar's width in %; [data-swatch]: a legend
 *   colour (no inline styles: the Content-Security-Policy forbids them).
 */
(function () {
  "use strict";

  function onReady(callback) {
    if (document.readyState !== "loading") callback();
    else document.addEventListener("DOMContentLoaded", callback);
  }

  function setupNavToggle() {
    var toggle = document.querySelector("[data-nav-toggle]");
    var nav = document.getElementById("site-nav");
    if (!toggle || !nav) return;
    toggle.addEventListener("click", function () {
      var open = nav.classList.toggle("open");
      toggle.setAttribute("aria-expanded", open ? "true" : "false");
    });
  }

  function setupAccountMenu() {
    var menu = document.querySelector(".account-menu");
    if (!menu) return;
    document.addEventListener("click", function (event) {
      if (menu.open && !menu.contains(event.target)) menu.open = false;
    });
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape") menu.open = false;
    });
  }

  function activateTab(group, panelId) {
    var tabs = group.querySelectorAll(".tab[data-tab]");
    var found = false;
    tabs.forEach(function (tab) {
      var active = tab.getAttribute("data-tab") === panelId;
      found = found || active;
      tab.classList.toggle("active", active);
      tab.setAttribute("aria-selected", active ? "true" : "false");
      var panel = document.getElementById(tab.getAttribute("data-tab"));
      if (panel) panel.classList.toggle("active", active);
    });
    return found;
  }

  function setupTabs() {
    document.querySelectorAll("[data-tabs]").forEach(function (group) {
      var tabs = group.querySelectorAll(".tab[data-tab]");
      if (!tabs.length) return;
      tabs.forEach(function (tab) {
        tab.setAttribute("role", "tab");
        tab.addEventListener("click", function (event) {
          event.preventDefault();
          var id = tab.getAttribute("data-tab");
          activateTab(group, id);
          if (history.replaceState) history.replaceState(null, "", "#" + id);
          group.dispatchEvent(new CustomEvent("tabchange", { detail: { panel: id } }));
        });
      });
      var fromHash = window.location.hash.replace(/^#/, "");
      var initiallyActive = group.querySelector(".tab.active[data-tab]");
      if (!(fromHash && activateTab(group, fromHash))) {
        activateTab(group, (initiallyActive || tabs[0]).getAttribute("data-tab"));
      }
    });
  }

  function setupConfirmAndSubmitOnce() {
    document.addEventListener("submit", function (event) {
      var form = event.target;
      var question = form.getAttribute("data-confirm");
      if (question && !window.confirm(question)) {
        event.preventDefault();
        return;
      }
      if (form.hasAttribute("data-submit-once")) {
        form.querySelectorAll("button[type=submit], input[type=submit]").forEach(function (button) {
          // Disable after the browser has collected the form data (a disabled button's
          // name/value would otherwise be dropped from the submission).
          setTimeout(function () { button.disabled = true; }, 0);
        });
      }
    });
  }

  function setupCopyButtons() {
    document.querySelectorAll("[data-copy-from]").forEach(function (button) {
      button.addEventListener("click", function () {
        var input = document.querySelector(button.getAttribute("data-copy-from"));
        if (!input) { return; }
        input.select();
        var done = function () { button.textContent = "Copied"; };
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(input.value).then(done, function () { document.execCommand("copy"); done(); });
        } else {
          document.execCommand("copy");
          done();
        }
      });
    });
  }

  var POLL_MS = 1500;

  // GET a status JSON of ours, never from a cache; rejects on any HTTP error. Shared with the
  // page scripts (analysis.js), which run after this one.
  function fetchStatus(url) {
    return fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" }, cache: "no-store" })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      });
  }
  window.studioFetchStatus = fetchStatus;

  function pollJob(node) {
    var url = node.getAttribute("data-poll-url");
    var message = node.querySelector("[data-poll-message]");
    var failures = 0;
    function poll() {
      fetchStatus(url)
        .then(function (payload) {
          failures = 0;
          if (message && payload.message) message.textContent = payload.message;
          if (payload.status !== "processing") {
            if (node.hasAttribute("data-poll-reload")) window.location.reload();
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

  function setupPolling() {
    if (!window.fetch) return;
    document.querySelectorAll("[data-poll-url]").forEach(pollJob);
  }

  function setupMeters() {
    document.querySelectorAll(".meter-fill[data-percent], [data-width]").forEach(function (bar) {
      var value = bar.getAttribute("data-width") || bar.getAttribute("data-percent");
      var percent = Math.max(0, Math.min(100, parseFloat(value) || 0));
      bar.style.width = percent + "%";
    });
    document.querySelectorAll("[data-swatch]").forEach(function (swatch) {
      var colour = swatch.getAttribute("data-swatch");
      if (/^#[0-9a-fA-F]{3,8}$/.test(colour)) swatch.style.background = colour;
    });
  }

  onReady(function () {
    setupNavToggle();
    setupAccountMenu();
    setupTabs();
    setupConfirmAndSubmitOnce();
    setupPolling();
    setupMeters();
    setupCopyButtons();
  });
})();
