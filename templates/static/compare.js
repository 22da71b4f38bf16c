/* netlapse compare: on the home page, the runs ticked become the compare page's
 * ?runs=a,b,...; on the compare page, only those runs (their lines, media and pairs) are
 * shown, one layer at a time, and each CKA heatmap follows the scrubber's epoch. Without
 * it the home page links to the comparison of every run, which the page then shows. */
(function () {
  "use strict";

  function all(selector, root) {
    return Array.prototype.slice.call((root || document).querySelectorAll(selector));
  }

  function checked(boxes) {
    return boxes.filter(function (b) { return b.checked; }).map(function (b) { return b.value; });
  }

  function query(runs) {
    return "?runs=" + runs.map(encodeURIComponent).join(",");
  }

  function setupHome(link) {
    var base = link.getAttribute("href"), everyRun = link.textContent;
    var picks = all("[data-compare-pick]");
    function update() {
      var chosen = checked(picks);
      link.href = chosen.length >= 2 ? base + query(chosen) : base;
      link.textContent = chosen.length >= 2 ? "Compare the " + chosen.length + " runs ticked" : everyRun;
    }
    picks.forEach(function (box) {
      box.parentNode.hidden = false;
      box.addEventListener("change", update);
    });
    var hint = document.querySelector("[data-compare-hint]");
    if (hint) hint.hidden = false;
    update();
  }

  function wanted(slugs) {
    // The runs the URL names (at least two of this page's), else all of them.
    var match = /[?&]runs=([^&#]*)/.exec(location.search);
    if (!match) return slugs;
    var named = match[1].split(",").map(function (s) {
      try { return decodeURIComponent(s); } catch (e) { return s; }
    });
    var chosen = slugs.filter(function (s) { return named.indexOf(s) >= 0; });
    return chosen.length >= 2 ? chosen : slugs;
  }

  function setupRuns(picker) {
    var boxes = all("[data-compare-run]", picker);
    var slugs = boxes.map(function (b) { return b.value; });
    var chosen = wanted(slugs);
    function shows(slug) { return chosen.indexOf(slug) >= 0; }
    function apply() {
      all("[data-run]").forEach(function (el) { el.hidden = !shows(el.getAttribute("data-run")); });
      all("[data-group]").forEach(function (g) {
        g.style.display = shows(g.getAttribute("data-group")) ? "" : "none";
      });
      all("[data-pair-first]").forEach(function (el) {
        el.hidden = !(shows(el.getAttribute("data-pair-first")) && shows(el.getAttribute("data-pair-second")));
      });
    }
    boxes.forEach(function (box) {
      box.checked = shows(box.value);
      box.addEventListener("change", function () {
        var next = checked(boxes);
        if (next.length < 2) { box.checked = true; return; } // a comparison needs two runs
        chosen = next;
        var search = next.length === slugs.length ? "" : query(next);
        history.replaceState(null, "", location.pathname + search + location.hash);
        apply();
      });
    });
    picker.hidden = false;
    apply();
  }

  function setupLayers(select) {
    function show() {
      all("[data-compare-row]").forEach(function (row) {
        row.hidden = row.getAttribute("data-compare-row") !== select.value;
      });
    }
    select.addEventListener("change", show);
    select.parentNode.hidden = false;
    show();
  }

  function setupHeatmap(box) {
    var data = JSON.parse(box.getAttribute("data-cka"));
    var svg = box.querySelector("svg");
    if (!svg || !data.length) return;
    var floor = parseFloat(svg.getAttribute("data-heat-floor")) || 0;
    var cells = {}, counts = {};
    all("[data-cell]", svg).forEach(function (el) { cells[el.getAttribute("data-cell")] = el; });
    all("[data-count]", svg).forEach(function (el) { counts[el.getAttribute("data-count")] = el; });
    var label = box.querySelector("[data-cka-label]");
    function draw(epoch) {
      var e = Math.max(0, Math.min(data.length - 1, epoch));
      data[e].forEach(function (row, r) {
        row.forEach(function (v, c) {
          var i = r * row.length + c, shade = v === null ? 0 : Math.max(0, Math.min(1, v));
          if (cells[i]) cells[i].setAttribute("fill-opacity", (floor + (1 - floor) * shade).toFixed(3));
          if (counts[i]) counts[i].textContent = v === null ? "\u2014" : v.toFixed(2);
        });
      });
      if (label) label.textContent = "CKA at epoch " + e + (e < epoch ? " (the last both runs have)" : "");
    }
    document.addEventListener("netlapse:epoch", function (event) { draw(event.detail.epoch); });
    var input = document.querySelector("[data-epoch-input]");
    draw(input ? parseInt(input.value, 10) : data.length - 1); // the scrubber spoke before us
  }

  var link = document.querySelector("[data-compare-link]");
  if (link) setupHome(link);
  var picker = document.querySelector("[data-compare-picker]");
  if (picker) setupRuns(picker);
  var select = document.querySelector("[data-compare-layer]");
  if (select) setupLayers(select);
  all("[data-cka]").forEach(setupHeatmap);
})();
