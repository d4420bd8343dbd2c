/* The comparison page: one control drives every column's video and image, and the difference
 * row is requested, polled and shown. Also the chooser's "2-4 ticked" check.
 *
 * Synchronised playback. Column A's video (the leader) plays by itself; on every animation
 * frame the followers are corrected from it:
 * - aligned frame by frame (same frame count and fps): followers play too, at the leader's
 *   rate, nudged by ±10 % while they drift less than half a frame, and seeked to the leader's
 *   time when they drift more (or while paused);
 * - aligned by source timestamp (different frame counts or fps): followers stay paused and are
 *   seeked to their frame whose source timestamp is nearest the leader's current frame's.
 * The slider and the step buttons seek the leader; image rows and the difference row show
 * the frame each column is on. `window.compareSync.drift()` reports each follower's distance
 * from where it should be, in its own frames (the browser test reads it).
 */
(function () {
  "use strict";

  var NUDGE = 0.1; // the largest playbackRate change while a follower catches up
  var HARD_DRIFT = 0.5; // frames: beyond this, a follower is seeked
  var SOFT_DRIFT = 0.05; // frames: below this, it plays at the leader's rate

  function onReady(callback) {
    if (document.readyState !== "loading") callback();
    else document.addEventListener("DOMContentLoaded", callback);
  }

  function readJson(id) {
    var node = document.getElementById(id);
    if (!node) return null;
    try { return JSON.parse(node.textContent); } catch (error) { return null; }
  }

  function clamp(value, low, high) { return Math.max(low, Math.min(high, value)); }

  // ------------------------------------------------------------------ chooser and history bar
  function setupChooser() {
    var form = document.querySelector("form.compare-choose[data-compare-select]");
    if (!form) return;
    var button = form.querySelector("[data-compare-submit]");
    var count = form.querySelector("[data-compare-count]");
    function update() {
      var ticked = form.querySelectorAll("input[name=a]:checked").length;
      button.disabled = ticked < 2 || ticked > 4;
      count.textContent = ticked + " ticked" + (ticked > 4 ? ": at most 4 can be compared." : ticked < 2 ? ": tick at least 2." : ".");
    }
    form.addEventListener("change", update);
    update();
  }

  // ------------------------------------------------------------------ timeline mapping
  function nearestIndex(values, target) {
    var best = 0;
    for (var index = 1; index < values.length; index++) {
      if (Math.abs(values[index] - target) < Math.abs(values[best] - target)) best = index;
    }
    return best;
  }

  function Timeline(data, columns) {
    this.alignment = data.alignment;
    this.columns = columns;
    this.leader = columns[0];
  }

  // The frame column `column` should show while the leader shows `leaderFrame`.
  Timeline.prototype.frameFor = function (column, leaderFrame) {
    if (column === this.leader) return leaderFrame;
    if (this.alignment === "frame") return clamp(leaderFrame, 0, column.frames - 1);
    var time = this.leader.timestamps[leaderFrame];
    return nearestIndex(column.timestamps, time === undefined ? 0 : time);
  };

  // ------------------------------------------------------------------ the player
  function setupComparison() {
    var data = readJson("compare-player-data");
    if (!data) return;
    var columns = data.columns.map(function (column, position) {
      return {
        position: position,
        letter: column.letter,
        frames: Math.max(1, column.frames || 0),
        fps: column.fps || 4,
        timestamps: column.timestamps || [],
        images: column.images || [],
        video: document.querySelector('[data-compare-video="' + position + '"]'),
        image: document.querySelector('[data-compare-image="' + position + '"]'),
        imageLabel: document.querySelector('[data-compare-image-label="' + position + '"]'),
        shownImage: 0,
      };
    }).filter(function (column) { return data.columns[column.position].ready; });
    if (!columns.length) return;
    var timeline = new Timeline(data, columns);
    var leader = timeline.leader;
    var followers = columns.slice(1);
    var controls = document.querySelector("[data-compare-controls]");
    var playButton = controls.querySelector("[data-compare-play]");
    var slider = controls.querySelector("[data-compare-slider]");
    var label = controls.querySelector("[data-compare-label]");
    var speed = controls.querySelector("[data-compare-speed]");
    var differences = setupDifferences(data.differences || []);
    var dragging = false;
    var playing = false;

    function leaderFrame() {
      if (!leader.video) return Number(slider.value) || 0;
      return clamp(Math.floor(leader.video.currentTime * leader.fps + 1e-3), 0, leader.frames - 1);
    }

    function rate() { return Number(speed.value) || 1; }

    // Signed distance (in the follower's frames) from where it should be, circular: the
    // videos loop, so the last frame and the first are one frame apart, not the whole clip.
    function driftOf(column, frame) {
      if (!column.video) return 0;
      var drift;
      if (timeline.alignment === "frame") {
        drift = (column.video.currentTime - leader.video.currentTime * leader.fps / column.fps) * column.fps;
      } else {
        drift = Math.floor(column.video.currentTime * column.fps + 1e-3) - timeline.frameFor(column, frame);
      }
      var span = column.frames;
      return ((drift % span) + span * 1.5) % span - span / 2;
    }

    function seekTo(column, frame) {
      if (column.video) column.video.currentTime = (frame + 0.5) / column.fps;
    }

    function syncFollower(column, frame) {
      var video = column.video;
      if (!video || video.readyState < 1 || video.seeking) return;
      if (timeline.alignment !== "frame") {
        if (!video.paused) video.pause();
        if (Math.abs(driftOf(column, frame)) >= 1) seekTo(column, timeline.frameFor(column, frame));
        return;
      }
      var drift = driftOf(column, frame);
      if (!playing) {
        if (!video.paused) video.pause();
        if (Math.abs(drift) > SOFT_DRIFT) video.currentTime = leader.video.currentTime * leader.fps / column.fps;
        return;
      }
      if (Math.abs(drift) > HARD_DRIFT) {
        video.currentTime = leader.video.currentTime * leader.fps / column.fps;
      } else if (Math.abs(drift) > SOFT_DRIFT) {
        video.playbackRate = rate() * (1 - clamp(drift, -1, 1) * NUDGE);
      } else if (video.playbackRate !== rate()) {
        video.playbackRate = rate();
      }
      if (video.paused) {
        var started = video.play();
        if (started && started.catch) started.catch(function () {});
      }
    }

    function showImages(frame) {
      columns.forEach(function (column) {
        var own = timeline.frameFor(column, frame);
        if (column.image && column.images[own] && column.shownImage !== own) {
          column.image.src = column.images[own];
          column.shownImage = own;
        }
        if (column.imageLabel) {
          var time = column.timestamps[own];
          column.imageLabel.textContent = "frame " + own + (timeline.alignment === "timestamp" && time !== undefined ? " · " + time.toFixed(2) + " s" : "");
        }
      });
      differences.show(frame);
    }

    var lastFrame = -1;
    function tick() {
      var frame = leaderFrame();
      followers.forEach(function (column) { syncFollower(column, frame); });
      if (frame !== lastFrame) {
        if (!dragging) slider.value = String(frame);
        label.textContent = leader.letter + ": frame " + frame + " / " + (leader.frames - 1);
        showImages(frame);
        lastFrame = frame;
      }
      window.requestAnimationFrame(tick);
    }

    function setPlaying(value) {
      playing = value && !!leader.video;
      playButton.textContent = playing ? "❚❚ Pause" : "▶ Play";
      if (!leader.video) return;
      leader.video.playbackRate = rate();
      if (playing) {
        var started = leader.video.play();
        if (started && started.catch) started.catch(function () {});
      } else {
        leader.video.pause();
        followers.forEach(function (column) { if (column.video) column.video.pause(); });
        seekLeader(leaderFrame());
      }
    }

    function seekLeader(frame) {
      frame = clamp(frame, 0, leader.frames - 1);
      if (leader.video) seekTo(leader, frame);
      else slider.value = String(frame);
      followers.forEach(function (column) {
        if (timeline.alignment === "frame") seekTo(column, clamp(frame, 0, column.frames - 1));
        else seekTo(column, timeline.frameFor(column, frame));
      });
      lastFrame = -1;
    }

    playButton.addEventListener("click", function () { setPlaying(!playing); });
    if (!leader.video) playButton.disabled = true;
    speed.addEventListener("change", function () {
      columns.forEach(function (column) { if (column.video) column.video.playbackRate = rate(); });
    });
    controls.querySelectorAll("[data-compare-step]").forEach(function (button) {
      button.addEventListener("click", function () {
        setPlaying(false);
        seekLeader(leaderFrame() + Number(button.getAttribute("data-compare-step")));
      });
    });
    slider.addEventListener("input", function () { dragging = true; seekLeader(Number(slider.value)); });
    slider.addEventListener("change", function () { dragging = false; });
    columns.forEach(function (column) {
      if (column.video) column.video.addEventListener("loadedmetadata", function () { seekLeader(leaderFrame()); });
    });
    document.querySelectorAll("[data-compare-layer]").forEach(function (select) {
      select.addEventListener("change", function () { switchLayer(Number(select.getAttribute("data-compare-layer")), select.value); });
    });

    window.compareSync = {
      alignment: timeline.alignment,
      play: function () { setPlaying(true); },
      pause: function () { setPlaying(false); },
      seek: function (frame) { setPlaying(false); seekLeader(frame); },
      leaderFrame: leaderFrame,
      // Each follower's distance from where it should be, in its own frames.
      drift: function () {
        var frame = leaderFrame();
        return followers.filter(function (column) { return column.video; }).map(function (column) { return driftOf(column, frame); });
      },
      videosPlaying: function () {
        return columns.filter(function (column) { return column.video; }).map(function (column) { return !column.video.paused; });
      },
    };
    seekLeader(0);
    window.requestAnimationFrame(tick);
  }

  // Changing a column's layer opens the unsaved comparison with that layer.
  function switchLayer(position, layer) {
    var save = document.querySelector("[data-testid=compare-save-form]");
    var values = save ? Array.prototype.map.call(save.querySelectorAll("input[name=a]"), function (input) { return input.value; })
      : JSON.parse((document.getElementById("compare-values") || { textContent: "[]" }).textContent);
    if (!values[position]) return;
    var parts = values[position].split(":");
    parts[1] = layer;
    values[position] = parts.slice(0, parts.length > 2 ? 3 : 2).join(":");
    window.location.href = window.location.pathname.replace(/compare\/.*$/, "compare/") + "?" + values.map(function (value) { return "a=" + encodeURIComponent(value); }).join("&");
  }

  // ------------------------------------------------------------------ the difference row
  function csrfToken() {
    var input = document.querySelector("[data-difference-csrf] input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function setupDifferences(payloads) {
    var nodes = Array.prototype.slice.call(document.querySelectorAll(".compare-difference")).filter(function (node) {
      return node.querySelector("[data-difference-image]");
    });
    var rows = nodes.map(function (node, index) {
      return {
        node: node,
        payload: payloads[index] || null,
        image: node.querySelector("[data-difference-image]"),
        legend: document.querySelector("[data-difference-legend]"),
        status: node.querySelector("[data-difference-status]"),
        stats: node.querySelector("[data-difference-stats]"),
        shown: -1,
      };
    });
    var currentFrame = 0;

    function render(row) {
      var payload = row.payload;
      if (!payload) return;
      if (payload.status === "ready") {
        row.status.textContent = "";
        row.legend.src = payload.legend_url;
        row.legend.classList.remove("hidden");
        row.image.classList.remove("hidden");
        row.stats.textContent = "Mean |difference| " + Number(payload.mean_abs).toFixed(3) + ", largest " + Number(payload.max_abs).toFixed(3) + " (1: one map at its maximum where the other is zero).";
        row.shown = -1;
        showRow(row, currentFrame);
      } else if (payload.status === "failed") {
        row.status.textContent = "The difference could not be computed: " + (payload.message || "unknown error") + " ";
        var retry = document.createElement("button");
        retry.type = "button";
        retry.className = "btn btn-sm";
        retry.textContent = "Try again";
        retry.addEventListener("click", function () { request(row); });
        row.status.appendChild(retry);
      } else if (payload.status === "unavailable") {
        row.status.textContent = payload.message || "Not available.";
      } else {
        row.status.textContent = payload.status === "running" ? "Computing the difference…" : "Waiting for a worker to compute the difference…";
      }
    }

    function poll(row, failures) {
      if (!row.payload.status_url) return;
      window.studioFetchStatus(row.payload.status_url).then(function (payload) {
        row.payload = payload;
        render(row);
        if (payload.status === "queued" || payload.status === "running") window.setTimeout(function () { poll(row, 0); }, 1000);
      }).catch(function () {
        if (failures < 5) window.setTimeout(function () { poll(row, failures + 1); }, 2000);
        else row.status.textContent = "The difference's progress could not be loaded; reload the page.";
      });
    }

    function request(row) {
      var body = new URLSearchParams();
      body.set("a", row.payload.a);
      body.set("b", row.payload.b);
      row.status.textContent = "Asking a worker to compute the difference…";
      window.fetch(row.payload.request_url, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Accept": "application/json", "X-CSRFToken": csrfToken() },
        body: body,
      }).then(function (response) {
        return response.json().then(function (payload) { return { ok: response.ok, payload: payload }; });
      }).then(function (answer) {
        if (!answer.ok) { row.status.textContent = answer.payload.error || "The difference cannot be computed."; return; }
        row.payload = answer.payload;
        render(row);
        if (row.payload.status === "queued" || row.payload.status === "running") poll(row, 0);
      }).catch(function () { row.status.textContent = "The difference could not be requested; reload the page."; });
    }

    function showRow(row, frame) {
      var frames = (row.payload && row.payload.frames) || [];
      if (!frames.length || row.shown === frame) return;
      row.image.src = frames[clamp(frame, 0, frames.length - 1)];
      row.shown = frame;
    }

    rows.forEach(function (row) {
      if (!row.payload) return;
      render(row);
      if (!row.payload.request_url) return;  // a share link's page: read-only
      if (row.payload.status === "none" || row.payload.status === "failed") request(row);
      else if (row.payload.status === "queued" || row.payload.status === "running") poll(row, 0);
    });

    return {
      show: function (frame) {
        currentFrame = frame;
        rows.forEach(function (row) { showRow(row, frame); });
      },
    };
  }

  onReady(function () {
    setupChooser();
    setupComparison();
  });
})();
