/* netlapse gallery: lazy videos that play only near the viewport, the epoch scrubber,
 * reduced motion, the confusion matrix per epoch. Small and dependency-free. Without it
 * every page still works: videos autoplay and loop (their <noscript> copies), and the
 * scrubber stays hidden. */
(function () {
  "use strict";

  var reduceMotion = window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches;
  var videos = Array.prototype.slice.call(document.querySelectorAll("video.anim-video"));
  // Videos that may load: the first screen's at once, the others once near the viewport.
  var active = videos.filter(function (v) { return !v.hasAttribute("data-lazy"); });
  // What a video should do when it becomes active: play, or show `epoch` (null = free).
  var clock = { playing: !reduceMotion, epoch: null, shown: null, fps: 1 };

  function quietly(promise) {
    // play() rejects when a later pause() interrupts it; that is expected, not an error.
    if (promise && promise.catch) promise.catch(function () {});
  }

  function seek(video, seconds) {
    // Showing any epoch costs zero extra bytes: every video holds one frame per epoch
    // (epoch k at (k + 0.5) / fps), so the scrubber seeks the videos already on the page
    // instead of loading per-epoch images, which the build never makes.
    if (video.readyState >= 1) {
      video.currentTime = seconds;
      return;
    }
    video.preload = "auto";
    video.addEventListener("loadedmetadata", function () { video.currentTime = seconds; }, { once: true });
    if (video.networkState !== video.NETWORK_LOADING) video.load();
  }

  function playFrom(video, seconds) {
    // Seek first, play once the seek is done. Chrome can leave a video seeking forever
    // (readyState 1, no frame, network idle) when it is sought while a play() is starting
    // and the video is off screen, which happens to every lazy video the reader scrolls
    // past while the page plays; a seek of a paused video always completes.
    video.addEventListener("seeked", function () { if (clock.playing) quietly(video.play()); }, { once: true });
    seek(video, seconds);
  }

  function stopAutoplay(video) {
    video.autoplay = false;
    video.removeAttribute("autoplay");
    video.pause();
  }

  function inView(video) {
    return video.netlapseInView !== false; // unknown (no IntersectionObserver) counts as in view
  }

  function activate(video) {
    // A video near the viewport: load a lazy one, and play it in step if the page plays.
    var fresh = active.indexOf(video) < 0;
    if (fresh) {
      active.push(video);
      var poster = video.getAttribute("data-poster");
      if (poster && !video.poster) video.poster = poster;
    }
    if (clock.epoch !== null) {
      if (fresh) seek(video, (clock.epoch + 0.5) / clock.fps);
    } else if (clock.playing && video.paused) {
      video.preload = "auto";
      if (clock.shown === null) quietly(video.play());
      else playFrom(video, clock.shown / clock.fps); // join in step
    }
  }

  function rest(video) {
    // Off screen a playing video costs CPU for nothing, and Chrome can leave a playing
    // video seeking forever when it loops (or is sought) off screen; it pauses there and
    // rejoins in step when it comes back.
    if (clock.playing && active.indexOf(video) >= 0) video.pause();
  }

  function setupVisibility() {
    if (!("IntersectionObserver" in window)) {
      videos.forEach(function (v) { if (v.hasAttribute("data-lazy")) activate(v); });
      return;
    }
    var observer = new IntersectionObserver(function (entries) {
      entries.forEach(function (entry) {
        entry.target.netlapseInView = entry.isIntersecting;
        if (entry.isIntersecting) activate(entry.target); else rest(entry.target);
      });
    }, { rootMargin: "200px 0px" });
    videos.forEach(function (v) { observer.observe(v); });
  }

  function setupPlayButton(video) {
    var button = video.parentNode.querySelector(".play-one");
    if (!button) return;
    function label() { button.textContent = video.paused ? "Play" : "Pause"; }
    button.hidden = false;
    button.addEventListener("click", function () {
      if (video.paused) quietly(video.play()); else video.pause();
    });
    video.addEventListener("play", label);
    video.addEventListener("pause", label);
    label();
  }

  function setupConfusion(box) {
    var data = JSON.parse(box.getAttribute("data-confusion"));
    var svg = box.querySelector("svg");
    if (!svg || !data.length) return;
    var floor = parseFloat(svg.getAttribute("data-heat-floor")) || 0;
    var cells = {}, counts = {};
    svg.querySelectorAll("[data-cell]").forEach(function (el) { cells[el.getAttribute("data-cell")] = el; });
    svg.querySelectorAll("[data-count]").forEach(function (el) { counts[el.getAttribute("data-count")] = el; });
    var label = document.querySelector("[data-confusion-label]");
    document.addEventListener("netlapse:epoch", function (event) {
      var matrix = data[event.detail.epoch];
      if (!matrix) return;
      matrix.forEach(function (row, r) {
        var total = row.reduce(function (a, b) { return a + b; }, 0);
        row.forEach(function (n, c) {
          var i = r * row.length + c, share = total ? n / total : 0;
          if (cells[i]) cells[i].setAttribute("fill-opacity", (floor + (1 - floor) * share).toFixed(3));
          if (counts[i]) counts[i].textContent = String(n);
        });
      });
      if (label) label.textContent = "epoch " + event.detail.epoch;
    });
  }

  function setupSprites() {
    // The network overview: each layer's thumbnail is one image holding a square per
    // shown epoch (data-frames of them, evenly spread over the run), moved to the
    // scrubber's epoch. Without JavaScript it stays at the last epoch.
    var sprites = Array.prototype.slice.call(document.querySelectorAll("[data-sprite]"));
    var epochs = parseInt(document.querySelector("[data-scrubber]").getAttribute("data-epochs"), 10);
    document.addEventListener("netlapse:epoch", function (event) {
      sprites.forEach(function (img) {
        var frames = parseInt(img.getAttribute("data-frames"), 10);
        var side = parseInt(img.getAttribute("data-side"), 10);
        var frame = epochs > 1 ? Math.round(event.detail.epoch * (frames - 1) / (epochs - 1)) : 0;
        img.style.transform = "translateY(-" + frame * side + "px)";
        img.setAttribute("data-frame", String(frame));
      });
    });
  }

  function setupMarkers() {
    // Each chart has a dashed vertical line that follows the scrubber's epoch.
    var markers = Array.prototype.slice.call(document.querySelectorAll("[data-epoch-marker]"));
    document.addEventListener("netlapse:epoch", function (event) {
      markers.forEach(function (line) {
        var svg = line.ownerSVGElement;
        var x = parseFloat(svg.getAttribute("data-x0")) + event.detail.epoch * parseFloat(svg.getAttribute("data-dx"));
        line.setAttribute("x1", x.toFixed(1));
        line.setAttribute("x2", x.toFixed(1));
        line.setAttribute("visibility", "visible");
      });
    });
  }

  function setupScrubber(bar) {
    var epochs = parseInt(bar.getAttribute("data-epochs"), 10);
    var fps = parseFloat(bar.getAttribute("data-fps"));
    var input = bar.querySelector("[data-epoch-input]");
    var label = bar.querySelector("[data-epoch-label]");
    var playButton = bar.querySelector("[data-play]");
    var state = { epoch: epochs - 1, clockStart: 0, clockEpoch: 0 };
    clock.fps = fps;

    function clamp(e) { return Math.max(0, Math.min(epochs - 1, e)); }

    function show(e) {
      state.epoch = clock.shown = e;
      input.value = String(e);
      label.textContent = "epoch " + e + " / " + (epochs - 1);
      document.dispatchEvent(new CustomEvent("netlapse:epoch", { detail: { epoch: e } }));
    }

    function setPlaying(playing) {
      clock.playing = playing;
      playButton.innerHTML = playing ? "&#10074;&#10074;" : "&#9654;";
      playButton.setAttribute("aria-label", playing ? "pause" : "play");
    }

    function pauseAt(e, keepHash) {
      e = clamp(e);
      setPlaying(false);
      clock.epoch = e;
      videos.forEach(stopAutoplay);
      active.forEach(function (v) { seek(v, (e + 0.5) / fps); });
      show(e);
      if (!keepHash) history.replaceState(null, "", "#epoch=" + e);
    }

    function tick() {
      if (!clock.playing) return;
      var ref = active.filter(function (v) { return v.readyState >= 2 && !v.paused; })[0];
      var e = ref ? Math.floor(ref.currentTime * fps)
        : (state.clockEpoch + Math.floor((performance.now() - state.clockStart) * fps / 1000)) % epochs;
      e = clamp(e);
      if (e !== state.epoch) show(e);
      window.requestAnimationFrame(tick);
    }

    function play() {
      var start = state.epoch >= epochs - 1 ? 0 : state.epoch;
      setPlaying(true);
      clock.epoch = null;
      state.clockStart = performance.now();
      state.clockEpoch = start;
      active.filter(inView).forEach(function (v) { playFrom(v, start / fps); });
      history.replaceState(null, "", location.pathname + location.search);
      window.requestAnimationFrame(tick);
    }

    function hashEpoch() {
      var match = /(?:^#|&)epoch=(\d+)/.exec(location.hash);
      return match ? clamp(parseInt(match[1], 10)) : null;
    }

    input.addEventListener("input", function () { pauseAt(parseInt(input.value, 10)); });
    bar.querySelectorAll("[data-step]").forEach(function (button) {
      button.addEventListener("click", function () {
        pauseAt(state.epoch + parseInt(button.getAttribute("data-step"), 10));
      });
    });
    playButton.addEventListener("click", function () {
      if (clock.playing) pauseAt(state.epoch); else play();
    });
    document.addEventListener("keydown", function (event) {
      var tag = event.target && event.target.tagName;
      if (event.altKey || event.ctrlKey || event.metaKey || /^(INPUT|TEXTAREA|SELECT)$/.test(tag)) return;
      var step = event.key === "ArrowLeft" ? -1 : event.key === "ArrowRight" ? 1 : 0;
      if (!step) return;
      event.preventDefault();
      pauseAt(state.epoch + step);
    });
    window.addEventListener("hashchange", function () {
      var e = hashEpoch();
      if (e !== null && e !== state.epoch) pauseAt(e, true);
    });

    bar.hidden = false;
    var initial = hashEpoch();
    if (initial !== null) {
      pauseAt(initial, true);
    } else if (clock.playing) {
      setPlaying(true);
      state.clockStart = performance.now();
      show(epochs - 1);
      window.requestAnimationFrame(tick);
    } else {
      setPlaying(false);
      show(epochs - 1);
    }
  }

  if (reduceMotion) {
    videos.forEach(function (v) {
      var started = v.played.length > 0;
      stopAutoplay(v);
      if (started) v.load(); // back to the poster (the last epoch) instead of a moving frame
      setupPlayButton(v);
    });
  }
  var confusion = document.querySelector("[data-confusion]");
  if (confusion) setupConfusion(confusion);
  var bar = document.querySelector("[data-scrubber]");
  if (bar) {
    setupMarkers();
    setupSprites();
    setupScrubber(bar);
  }
  setupVisibility();
})();
