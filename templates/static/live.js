/* netlapse live gallery: while the run still trains, pages built with `--live` poll the
 * site's live.json (written by every build) and reload when a newer build of this run is
 * there. A static file and a timer: it works from `serve`, GitHub Pages or any host. */
(function () {
  "use strict";
  var page = document.documentElement;
  var source = page.getAttribute("data-live");
  if (!source || !window.fetch) return;
  var built = page.getAttribute("data-built");
  var POLL_MS = 5000;

  function check() {
    fetch(source, { cache: "no-store" })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (status) {
        if (status && status.built !== built) {
          window.location.reload();
          return;
        }
        window.setTimeout(check, POLL_MS);
      })
      .catch(function () { window.setTimeout(check, POLL_MS); });
  }
  window.setTimeout(check, POLL_MS);
})();
