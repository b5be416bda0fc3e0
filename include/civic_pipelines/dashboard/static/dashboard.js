// Draws every chart of the page from the figure JSON embedded beside it (no extra requests).
//
// The charts in the first screen are drawn first; the page is then "ready" (body[data-ready],
// window.civicTimings.readyMs: what a reader waits for), and the charts below are drawn one per
// task right after (body[data-all-drawn], civicTimings.allMs), so the page stays responsive and
// the first screen does not wait for the last map. The browser tests wait for these marks.
(function () {
  "use strict";

  function ready(fn) {
    if (document.readyState !== "loading") fn();
    else document.addEventListener("DOMContentLoaded", fn);
  }

  function drawAll() {
    var started = performance.now();
    var body = document.body;
    var holders = Array.prototype.slice.call(document.querySelectorAll("[data-chart]"));
    var timings = { perChart: {}, charts: holders.length };
    window.civicTimings = timings;
    function mark(name) {
      timings[name] = Math.round(performance.now());
    }
    if (!holders.length) {
      body.dataset.chartsRendered = "0";
      mark("readyMs");
      mark("allMs");
      body.dataset.ready = "1";
      body.dataset.allDrawn = "1";
      return;
    }
    if (typeof window.Plotly === "undefined") {
      console.error("plotly.js did not load");
      return;
    }
    var screen = window.innerHeight + 100;
    var first = holders.filter(function (h) { return h.getBoundingClientRect().top < screen; });
    var rest = holders.filter(function (h) { return first.indexOf(h) < 0; });
    var queue = first.concat(rest);
    var config = { responsive: true, displaylogo: false, modeBarButtonsToRemove: ["select2d", "lasso2d"] };
    var drawn = 0;

    function next() {
      if (drawn === first.length && !body.dataset.ready) {
        mark("readyMs");
        body.dataset.ready = "1";
      }
      if (!queue.length) {
        mark("allMs");
        timings.chartsMs = Math.round(performance.now() - started);
        body.dataset.chartsRendered = String(drawn);
        body.dataset.allDrawn = "1";
        return;
      }
      var holder = queue.shift();
      var id = holder.getAttribute("data-chart");
      var source = document.querySelector('script[data-figure="' + id + '"]');
      var t0 = performance.now();
      var figure = JSON.parse(source.textContent);
      window.Plotly.newPlot(holder, figure.data, figure.layout, config).then(function () {
        timings.perChart[id] = Math.round(performance.now() - t0);
        holder.dataset.rendered = "1";
        drawn += 1;
        // the first screen in one go; after it, one chart per task
        if (drawn < first.length) next();
        else window.setTimeout(next, 0);
      }, function (error) {
        console.error("chart " + id + " failed to draw: " + error);
      });
    }
    next();
  }

  ready(function () {
    // ticking or unticking a source applies the filters at once (Apply is for the months)
    var form = document.querySelector("form[data-filters]");
    if (form) {
      form.addEventListener("change", function (event) {
        if (event.target && event.target.name === "source") form.submit();
      });
    }
    drawAll();
  });
})();
