/* marquee.js: send Marquee events from a browser to the collector (no build, no dependencies).
 *
 *   <script src="https://collector.example/v1/marquee.js" data-key="mqk_..."
 *           data-source="urn:news:web" data-user="reader-42" defer></script>
 *   <a href="/a/42" data-marquee-item="article-42">...</a>   <!-- a recommendation slot -->
 *
 * Slots (elements with data-marquee-item) are recorded when at least half of one has been on
 * screen (a "view" interaction, once per element and page) and when clicked ("click").
 * Events are queued and sent in batches with navigator.sendBeacon (a text/plain body, so no
 * CORS preflight, and the key as ?key= because a beacon cannot set headers), falling back to
 * fetch with keepalive; the queue is flushed when the page is hidden or left.
 * API: Marquee.init(options), Marquee.interaction(action, itemId, extra), Marquee.track(type,
 * data), Marquee.observe(root), Marquee.flush(). Details: docs/collector.md.
 */
(function (window, document) {
  "use strict";

  var INTERACTION = "marquee.interaction.v1";
  var script = document.currentScript;
  var config = { endpoint: null, key: null, source: null, userId: null, maxBatch: 50, flushMs: 1000 };
  var queue = [];
  var timer = null;
  var seen = typeof WeakSet === "function" ? new WeakSet() : null;
  var observer = null;

  function uuid() {
    if (window.crypto && window.crypto.randomUUID) return window.crypto.randomUUID();
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    var hex = Array.prototype.map.call(bytes, function (b) { return (b + 0x100).toString(16).slice(1); }).join("");
    return hex.slice(0, 8) + "-" + hex.slice(8, 12) + "-" + hex.slice(12, 16) + "-" + hex.slice(16, 20) + "-" + hex.slice(20);
  }

  // A reader without a known id gets a random one, kept in this browser (never a fingerprint).
  function anonymousUser() {
    var name = "marquee.anonymous_id";
    try {
      var id = window.localStorage.getItem(name);
      if (!id) { id = "anon-" + uuid(); window.localStorage.setItem(name, id); }
      return id;
    } catch (e) {
      return "anon-" + uuid();
    }
  }

  function send(batch) {
    if (!config.endpoint || !config.key) return;
    var url = config.endpoint + (config.endpoint.indexOf("?") < 0 ? "?" : "&") + "key=" + encodeURIComponent(config.key);
    var body = JSON.stringify(batch);
    var type = "text/plain;charset=UTF-8";
    if (navigator.sendBeacon && navigator.sendBeacon(url, new Blob([body], { type: type }))) return;
    if (window.fetch) {
      window.fetch(url, { method: "POST", body: body, headers: { "Content-Type": type }, keepalive: true, credentials: "omit" })
        .catch(function () { /* the page is going; nothing useful to do with the error */ });
    }
  }

  function flush() {
    if (timer) { window.clearTimeout(timer); timer = null; }
    while (queue.length) send(queue.splice(0, config.maxBatch));
  }

  function track(type, data) {
    queue.push({ specversion: "1.0", id: uuid(), source: config.source, type: type, time: new Date().toISOString(), data: data });
    if (queue.length >= config.maxBatch) flush();
    else if (!timer) timer = window.setTimeout(flush, config.flushMs);
  }

  function interaction(action, itemId, extra) {
    var data = { user_id: config.userId || anonymousUser(), item_id: String(itemId), action: action };
    for (var name in extra || {}) if (Object.prototype.hasOwnProperty.call(extra, name)) data[name] = extra[name];
    track(INTERACTION, data);
  }

  function slot(element) {
    return element && element.closest ? element.closest("[data-marquee-item]") : null;
  }

  function observe(root) {
    var elements = (root || document).querySelectorAll("[data-marquee-item]");
    if (!observer && window.IntersectionObserver) {
      observer = new IntersectionObserver(function (entries) {
        entries.forEach(function (entry) {
          if (!entry.isIntersecting || (seen && seen.has(entry.target))) return;
          if (seen) seen.add(entry.target);
          observer.unobserve(entry.target);
          interaction("view", entry.target.getAttribute("data-marquee-item"));
        });
      }, { threshold: 0.5 });
    }
    Array.prototype.forEach.call(elements, function (element) { if (observer) observer.observe(element); });
  }

  function init(options) {
    for (var name in options || {}) if (Object.prototype.hasOwnProperty.call(options, name)) config[name] = options[name];
    return api;
  }

  // A click on a slot, wherever it lands inside it; sent at once, as a navigation may follow.
  document.addEventListener("click", function (event) {
    var element = slot(event.target);
    if (element) { interaction("click", element.getAttribute("data-marquee-item")); flush(); }
  }, true);
  document.addEventListener("visibilitychange", function () { if (document.visibilityState === "hidden") flush(); });
  window.addEventListener("pagehide", flush);

  var api = { init: init, track: track, interaction: interaction, observe: observe, flush: flush };
  window.Marquee = api;

  if (script) {
    init({
      endpoint: script.getAttribute("data-endpoint") || new URL("events", script.src).href,
      key: script.getAttribute("data-key"),
      source: script.getAttribute("data-source"),
      userId: script.getAttribute("data-user"),
    });
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", function () { observe(); });
    else observe();
  }
})(window, document);
