/* Analysis pages: the new-analysis form (dependent fields, preview), live progress, the
 * frame-synchronised heatmap video player, the heatmap image viewer and the lightbox.
 *
 * Synchronised playback: the videos never play on their own. One clock (performance.now())
 * gives the current frame; every video is seeked to the middle of that frame. All videos
 * therefore always show the same frame index — independent decoders cannot drift apart.
 */
(function () {
  "use strict";

  function onReady(callback) {
    if (document.readyState !== "loading") callback();
    else document.addEventListener("DOMContentLoaded", callback);
  }

  function readJson(id) {
    var node = document.getElementById(id);
    if (!node) return null;
    try { return JSON.parse(node.textContent); } catch (error) { return null; }
  }

  function option(value, label) {
    var node = document.createElement("option");
    node.value = value;
    node.textContent = label;
    return node;
  }

  // ------------------------------------------------------------------ the form
  function setupForm() {
    var form = document.querySelector("[data-analysis-form]");
    if (!form) return;
    var data = readJson("analysis-form-data") || { classifiers: {}, videos: {} };
    var classifierSelect = form.querySelector("select[name=classifier]");
    var fixedClassifier = form.querySelector("[data-fixed-classifier]");
    var videoSelect = form.querySelector("select[name=video]");
    var expectedSelect = form.querySelector("[data-expected-class]");
    var layerBoxes = form.querySelector("[data-layer-boxes]");

    function currentClassifier() {
      var code = classifierSelect ? classifierSelect.value : (fixedClassifier ? fixedClassifier.value : "");
      return data.classifiers[code] || null;
    }

    function defaultExpected() {
      var classifier = currentClassifier();
      var video = videoSelect ? data.videos[videoSelect.value] : null;
      if (!classifier || !video || video.expected_class === null || video.expected_class === undefined) return "";
      return video.expected_class < classifier.num_classes ? String(video.expected_class) : "";
    }

    function rebuildClasses(keepValue) {
      var classifier = currentClassifier();
      var previous = keepValue ? expectedSelect.value : defaultExpected();
      expectedSelect.innerHTML = "";
      expectedSelect.appendChild(option("", "Unknown"));
      if (classifier) {
        classifier.labels.forEach(function (label, index) {
          expectedSelect.appendChild(option(String(index), index + ": " + label));
        });
      }
      expectedSelect.value = previous;
      if (expectedSelect.value !== previous) expectedSelect.value = "";
    }

    function rebuildLayers() {
      var classifier = currentClassifier();
      layerBoxes.innerHTML = "";
      if (!classifier) {
        var placeholder = document.createElement("span");
        placeholder.className = "muted small";
        placeholder.textContent = "Choose a classifier to list its layers.";
        layerBoxes.appendChild(placeholder);
        return;
      }
      classifier.layers.forEach(function (layer) {
        var label = document.createElement("label");
        label.className = "layer-box";
        var box = document.createElement("input");
        box.type = "checkbox";
        box.name = "layers";
        box.value = layer;
        box.checked = true; // default: every Conv3D layer
        var name = document.createElement("span");
        name.className = "mono";
        name.textContent = layer;
        label.appendChild(box);
        label.appendChild(document.createTextNode(" "));
        label.appendChild(name);
        layerBoxes.appendChild(label);
      });
    }

    if (classifierSelect) {
      classifierSelect.addEventListener("change", function () { rebuildClasses(false); rebuildLayers(); syncOptional(); });
    }
    if (videoSelect) {
      videoSelect.addEventListener("change", function () {
        var value = defaultExpected();
        if (value !== "" || !expectedSelect.value) expectedSelect.value = value;
      });
    }
    // A fresh page with a classifier already chosen (browser restored the form): fill in.
    if (classifierSelect && classifierSelect.value && expectedSelect.options.length <= 1) {
      rebuildClasses(false);
      rebuildLayers();
    }

    // Threshold only matters for the fixed mode; mean/std only for mean_std scaling; pooling
    // only for the methods that pool gradients; the scaling hint says what "auto" means for
    // the chosen model.
    var thresholdRow = form.querySelector("[data-threshold-row]");
    var meanStd = form.querySelector("[data-mean-std]");
    var scaling = form.querySelector("select[name=scaling]");
    var scalingHint = form.querySelector("[data-scaling-hint]");
    var method = form.querySelector("select[name=method]");
    var pooling = form.querySelector("select[name=pooling]");
    var elementwise = data.elementwise_methods || [];
    function syncOptional() {
      var mode = form.querySelector("input[name=bbox_mode]:checked");
      if (thresholdRow) thresholdRow.classList.toggle("is-disabled", !mode || mode.value !== "threshold");
      if (meanStd && scaling) meanStd.classList.toggle("is-disabled", scaling.value !== "mean_std");
      if (method && pooling) {
        var noPooling = elementwise.indexOf(method.value) !== -1;
        pooling.disabled = noPooling;
        pooling.closest(".form-row").classList.toggle("is-disabled", noPooling);
      }
      if (scalingHint && scaling) {
        var classifier = currentClassifier();
        if (scaling.value !== "auto" || !classifier) scalingHint.textContent = "";
        else scalingHint.textContent = "This model gets " + classifier.scaling + "." + (classifier.scaling_reason ? " " + classifier.scaling_reason : "");
      }
    }
    form.addEventListener("change", syncOptional);
    syncOptional();

    setupPreview(form);
  }

  function setupPreview(form) {
    var button = form.querySelector("[data-preview-button]");
    if (!button || !window.fetch) return;
    var result = form.querySelector("[data-preview-result]");
    var errorBox = form.querySelector("[data-preview-error]");
    var waiting = form.querySelector("[data-preview-waiting]");
    var waitingMessage = form.querySelector("[data-preview-message]");
    var video = form.querySelector("[data-preview-video]");
    var summary = form.querySelector("[data-preview-summary]");
    var scaling = form.querySelector("[data-preview-scaling]");
    var list = form.querySelector("[data-preview-frames]");
    var idleLabel = button.textContent;
    var generation = 0; // a newer click abandons the older preview's polling

    function finish() {
      button.disabled = false;
      button.textContent = idleLabel;
      waiting.classList.add("hidden");
    }

    function showError(message) {
      errorBox.textContent = message;
      errorBox.classList.remove("hidden");
      result.hidden = true;
      finish();
    }

    function showPreview(payload) {
      video.src = payload.clip_url;
      video.load();
      var playing = video.play();
      if (playing && playing.catch) playing.catch(function () {});
      summary.textContent = payload.frame_count + " frames from " + payload.source_frame_count + " source frames.";
      var range = payload.input_range ? "; the model receives values from " + payload.input_range[0] + " to " + payload.input_range[1] : "";
      scaling.textContent = "Scaling: " + payload.scaling + range + ".";
      list.innerHTML = "";
      payload.frames.forEach(function (frame) {
        var item = document.createElement("li");
        item.textContent = "#" + frame.index + " \u2190 frame " + frame.source_frame + " \u00b7 " + frame.timestamp + " s";
        list.appendChild(item);
      });
      result.hidden = false;
      finish();
    }

    function poll(url, mine, failures) {
      if (mine !== generation) return;
      window.studioFetchStatus(url)
        .then(function (payload) {
          if (mine !== generation) return;
          if (payload.status === "ready") showPreview(payload);
          else if (payload.status === "failed") showError(payload.message || "The preview failed.");
          else {
            waitingMessage.textContent = payload.message || "";
            window.setTimeout(function () { poll(url, mine, 0); }, 1000);
          }
        })
        .catch(function () {
          if (failures >= 5) showError("The preview could not be loaded; check your connection and try again.");
          else window.setTimeout(function () { poll(url, mine, failures + 1); }, 2000);
        });
    }

    button.addEventListener("click", function (event) {
      event.preventDefault();
      var body = new FormData(form);
      body.set("action", "preview");
      generation += 1;
      var mine = generation;
      button.disabled = true;
      button.textContent = "Preparing the preview\u2026";
      errorBox.classList.add("hidden");
      result.hidden = true;
      waitingMessage.textContent = "Queued for a worker.";
      waiting.classList.remove("hidden");
      fetch(form.getAttribute("action") || window.location.pathname, {
        method: "POST",
        body: body,
        credentials: "same-origin",
        headers: { "Accept": "application/json", "X-CSRFToken": body.get("csrfmiddlewaretoken") || "" },
      })
        .then(function (response) { return response.json().catch(function () { return { ok: false, error: "The server answered " + response.status + "." }; }); })
        .then(function (payload) {
          if (!payload.ok) {
            var message = payload.error || "The preview failed.";
            var errors = payload.errors || {};
            Object.keys(errors).forEach(function (field) {
              errors[field].forEach(function (item) { message += " " + (field === "__all__" ? "" : field.replace(/_/g, " ") + ": ") + item.message; });
            });
            showError(message);
            return;
          }
          poll(payload.status_url, mine, 0);
        })
        .catch(function () { showError("The preview could not be requested; check your connection and try again."); });
    });
  }

  // ------------------------------------------------------------------ live progress
  function setupProgress() {
    var card = document.querySelector("[data-progress]");
    if (!card || !window.fetch) return;
    var url = card.getAttribute("data-status-url");
    var stage = card.querySelector("[data-stage]");
    var percent = card.querySelector("[data-percent]");
    var bar = card.querySelector("[data-bar]");
    var progressbar = card.querySelector("[data-progressbar]");
    var prediction = card.querySelector("[data-prediction]");
    var predicted = card.querySelector("[data-predicted]");
    var badge = document.querySelector("[data-status-badge]");
    var failures = 0;

    function poll() {
      window.studioFetchStatus(url)
        .then(function (status) {
          failures = 0;
          stage.textContent = status.stage || status.status_label;
          percent.textContent = status.progress + "%";
          bar.style.width = status.progress + "%";
          progressbar.setAttribute("aria-valuenow", String(status.progress));
          if (badge) {
            badge.className = "badge badge-" + status.status;
            badge.textContent = status.status_label;
          }
          if (status.predicted_class !== null && status.predicted_class !== undefined) {
            predicted.textContent = status.predicted_label;
            prediction.hidden = false;
          }
          if (!status.active) {
            // Final: show the result (or the error) rendered by the server.
            setTimeout(function () { window.location.reload(); }, 600);
            return;
          }
          setTimeout(poll, 1000);
        })
        .catch(function () {
          failures += 1;
          setTimeout(poll, Math.min(10000, 1000 * Math.pow(2, failures)));
        });
    }
    setTimeout(poll, 1000);
  }

  // ------------------------------------------------------------------ synchronised videos
  function setupSyncPlayer(data) {
    var root = document.querySelector("[data-sync-player]");
    if (!root || !data) return;
    var videos = Array.prototype.slice.call(root.querySelectorAll("video[data-sync-video]"));
    var playButton = root.querySelector("[data-play]");
    var slider = root.querySelector("[data-frame-slider]");
    var label = root.querySelector("[data-frame-label]");
    var speedSelect = root.querySelector("[data-speed]");
    var fps = data.fps || 4;
    var frames = Math.max(1, data.frames || 1);
    var state = { playing: false, frame: 0, startWall: 0, startFrame: 0, speed: 1, raf: 0 };

    function show(frame) {
      frame = Math.max(0, Math.min(frames - 1, frame));
      state.frame = frame;
      // The middle of the frame: robust to rounding in the decoder's timestamps.
      var time = (frame + 0.5) / fps;
      videos.forEach(function (video) {
        if (video.readyState >= 1 && Math.abs(video.currentTime - time) > 1e-3) video.currentTime = time;
      });
      slider.value = String(frame);
      var source = data.source_frames && data.source_frames[frame];
      var stamp = data.timestamps && data.timestamps[frame];
      label.textContent = "frame " + frame + " / " + (frames - 1) +
        (source !== undefined ? " · source " + source : "") +
        (stamp !== undefined ? " · " + stamp.toFixed(2) + " s" : "");
      root.setAttribute("data-current-frame", String(frame));
    }

    function tick() {
      if (!state.playing) return;
      var elapsed = (performance.now() - state.startWall) / 1000 * state.speed;
      var frame = state.startFrame + Math.floor(elapsed * fps);
      if (frame >= frames) {
        show(frames - 1);
        pause();
        return;
      }
      if (frame !== state.frame) show(frame);
      state.raf = requestAnimationFrame(tick);
    }

    function play() {
      if (state.frame >= frames - 1) show(0);
      state.playing = true;
      state.startWall = performance.now();
      state.startFrame = state.frame;
      playButton.textContent = "❚❚ Pause";
      playButton.setAttribute("aria-label", "Pause all");
      root.classList.add("is-playing");
      state.raf = requestAnimationFrame(tick);
    }

    function pause() {
      state.playing = false;
      cancelAnimationFrame(state.raf);
      playButton.textContent = "▶ Play";
      playButton.setAttribute("aria-label", "Play all");
      root.classList.remove("is-playing");
    }

    playButton.addEventListener("click", function () { if (state.playing) pause(); else play(); });
    slider.addEventListener("input", function () {
      var wasPlaying = state.playing;
      pause();
      show(parseInt(slider.value, 10) || 0);
      if (wasPlaying) play();
    });
    root.querySelectorAll("[data-step]").forEach(function (button) {
      button.addEventListener("click", function () {
        pause();
        show(state.frame + parseInt(button.getAttribute("data-step"), 10));
      });
    });
    speedSelect.addEventListener("change", function () {
      var wasPlaying = state.playing;
      pause();
      state.speed = parseFloat(speedSelect.value) || 1;
      if (wasPlaying) play();
    });
    videos.forEach(function (video) {
      video.pause();
      // A video that finishes loading later joins at the shared frame.
      video.addEventListener("loadedmetadata", function () { show(state.frame); });
    });
    show(0);
  }

  // ------------------------------------------------------------------ images and lightbox
  function setupLightbox() {
    var dialog = document.querySelector("[data-lightbox]");
    if (!dialog) return null;
    var image = dialog.querySelector("[data-lightbox-img]");
    var caption = dialog.querySelector("[data-lightbox-caption]");
    dialog.addEventListener("click", function (event) { if (event.target === dialog) dialog.close(); });
    function open(url, text) {
      image.src = url;
      image.alt = text || "";
      caption.textContent = text || "";
      if (dialog.showModal) dialog.showModal(); else dialog.setAttribute("open", "");
    }
    document.addEventListener("click", function (event) {
      var trigger = event.target.closest("[data-enlarge]");
      if (trigger) open(trigger.getAttribute("data-enlarge"), trigger.getAttribute("data-caption"));
    });
    return open;
  }

  function setupImageViewer(data, openLightbox) {
    var root = document.querySelector("[data-image-viewer]");
    if (!root || !data) return;
    var picker = root.querySelector("[data-layer-pick]");
    var slider = root.querySelector("[data-image-slider]");
    var label = root.querySelector("[data-image-label]");
    var current = root.querySelector("[data-image-current]");
    var grids = root.querySelectorAll("[data-layer-images]");
    var state = { layer: 0, frame: 0 };

    function caption() {
      var layer = data.layers[state.layer];
      var stamp = data.timestamps && data.timestamps[state.frame];
      var source = data.source_frames && data.source_frames[state.frame];
      return (layer ? layer.short : "") + " · frame " + state.frame +
        (source !== undefined ? " · source frame " + source : "") +
        (stamp !== undefined ? " · " + stamp.toFixed(2) + " s" : "");
    }

    function render() {
      var layer = data.layers[state.layer];
      if (!layer) return;
      var url = layer.images[state.frame];
      if (url && current.getAttribute("src") !== url) current.src = url;
      label.textContent = caption();
      grids.forEach(function (grid) {
        var active = grid.getAttribute("data-layer-images") === String(state.layer);
        grid.classList.toggle("hidden", !active);
        if (active) {
          grid.querySelectorAll(".frame-tile").forEach(function (tile) {
            tile.classList.toggle("is-current", tile.getAttribute("data-frame") === String(state.frame));
          });
        }
      });
    }

    picker.addEventListener("change", function () { state.layer = parseInt(picker.value, 10) || 0; render(); });
    slider.addEventListener("input", function () { state.frame = parseInt(slider.value, 10) || 0; render(); });
    root.querySelector("[data-enlarge-current]").addEventListener("click", function () {
      if (openLightbox && current.src) openLightbox(current.src, caption());
    });
    render();
  }

  onReady(function () {
    setupForm();
    setupProgress();
    var player = readJson("analysis-player-data");
    setupSyncPlayer(player);
    var openLightbox = setupLightbox();
    setupImageViewer(player, openLightbox);
  });
})();
