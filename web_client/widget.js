/* livehost chat widget. Put one tag on any page:

     <script src="https://LIVEHOST/widget.js" data-character="mika" data-color="#2a7" data-position="right"
             data-lang="en" defer></script>

   It shows a launcher button and, when opened, a chat panel (text first, voice on request). The launcher lives in
   a shadow root and the panel is an iframe served by livehost (/widget.html), so the host page's CSS and scripts
   cannot reach either, and the panel talks to livehost from its own origin (no CORS setup needed).

   Attributes (all optional):
     data-character  character id (GET /v1/characters); default: the server's default character
     data-color      accent colour, any CSS colour (default #6d4cff)
     data-position   right | left (default right)
     data-lang       language of the panel's words and of speech recognition, e.g. en, zh (default: <html lang>, en)
     data-avatar     "on": show the animated avatar in the panel (default: a small picture only)
     data-title      the panel's title (default: the character's name)
     data-token-url  your backend's endpoint answering {"value": "<client token>"} (POST, same origin as your page):
                     needed when livehost mints client tokens only for API-key holders (server.page_tokens: false)
     data-open       "1": open the panel on load

   Events, dispatched on window (they bubble):
     livehost:handoff  the visitor wants a person ("Talk to a person", or the character offered a human:
                       the server's `livehost.handoff` event). event.detail = {character, reason ("user_requested",
                       "user_asked" or "no_knowledge"), transcript: [{role: "user"|"assistant", text}], at (ISO time)}
                       Hook it to open your live-chat tool, e.g.
                       window.addEventListener("livehost:handoff", (e) => myDesk.open(e.detail.transcript));
     livehost:open, livehost:close  the panel opened or closed (detail: {character})

   Script API: window.livehostWidget.open(), .close(), .toggle()
*/
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script || window.livehostWidget) return;
  // Few globals on purpose: this file runs in the host page, which may have replaced URL, fetch and friends.
  var origin = (/^https?:\/\/[^/?#]+/i.exec(script.src) || [location.origin])[0];
  var data = script.dataset;
  var position = data.position === "left" ? "left" : "right";
  var color = data.color && window.CSS && CSS.supports("color", data.color) ? data.color : "#6d4cff";
  var lang = data.lang || document.documentElement.lang || "en";
  var label = lang.indexOf("zh") === 0 ? "打开客服聊天" : "Open chat";
  var opened = false;
  var frame = null;

  var host = document.createElement("livehost-widget");
  // Inline !important beats any page rule on this element; inside the shadow root, page CSS does not apply.
  host.setAttribute("style", "all: initial !important; display: block !important; position: fixed !important; " +
    "z-index: 2147483000 !important; bottom: 0 !important; " + position + ": 0 !important; width: 0 !important; " +
    "height: 0 !important; visibility: visible !important; opacity: 1 !important; transform: none !important;");
  var root = host.attachShadow({mode: "open"});
  root.innerHTML =
    "<style>" +
    ":host { all: initial !important; }" +
    "* { box-sizing: border-box; }" +
    ".launcher { position: fixed; bottom: 20px; " + position + ": 20px; width: 60px; height: 60px; border: 0;" +
    "  border-radius: 50%; background: " + color + "; color: #fff; cursor: pointer; display: grid; place-items: center;" +
    "  box-shadow: 0 6px 20px rgba(0,0,0,.25); padding: 0; margin: 0; transition: transform .15s; }" +
    ".launcher:hover { transform: scale(1.06); }" +
    ".launcher:focus-visible { outline: 3px solid " + color + "; outline-offset: 3px; }" +
    ".launcher svg { width: 28px; height: 28px; display: block; }" +
    ".launcher .close { display: none; } .launcher[aria-expanded=true] .open { display: none; }" +
    ".launcher[aria-expanded=true] .close { display: block; }" +
    ".panel { position: fixed; bottom: 92px; " + position + ": 20px; width: 380px; height: min(640px, calc(100vh - 112px));" +
    "  border-radius: 16px; overflow: hidden; background: #fff; box-shadow: 0 12px 48px rgba(0,0,0,.28);" +
    "  opacity: 0; transform: translateY(12px) scale(.98); transform-origin: bottom " + position + ";" +
    "  transition: opacity .18s, transform .18s; visibility: hidden; }" +
    ".panel.open { opacity: 1; transform: none; visibility: visible; }" +
    ".panel iframe { width: 100%; height: 100%; border: 0; display: block; background: #fff; }" +
    "@media (max-width: 480px) { .panel { inset: 0; width: 100%; height: 100%; border-radius: 0; }" +
    "  .launcher[aria-expanded=true] { display: none; } }" +
    "@media (prefers-reduced-motion: reduce) { .panel, .launcher { transition: none; } }" +
    "</style>" +
    "<div class='panel' id='panel' role='dialog' aria-label='Chat'></div>" +
    "<button class='launcher' type='button' aria-expanded='false' aria-controls='panel'>" +
    "<svg class='open' viewBox='0 0 24 24' fill='none' stroke='currentColor' stroke-width='2' stroke-linecap='round'" +
    " stroke-linejoin='round' aria-hidden='true'><path d='M21 12a8 8 0 0 1-11.6 7.1L4 20l1-4.4A8 8 0 1 1 21 12z'/>" +
    "<path d='M8.5 12h.01M12 12h.01M15.5 12h.01' stroke-width='3'/></svg>" +
    "<svg class='close' viewBox='0 0 24 24' fill='none' stroke='currentColor' stroke-width='2.4' stroke-linecap='round'" +
    " aria-hidden='true'><path d='M6 6l12 12M18 6L6 18'/></svg></button>";
  var launcher = root.querySelector(".launcher");
  var panel = root.querySelector(".panel");
  launcher.setAttribute("aria-label", label);

  function emit(type, detail) {
    window.dispatchEvent(new CustomEvent(type, {detail: detail, bubbles: true}));
  }

  var frameReady = false;

  function post(message) {
    if (frameReady && frame.contentWindow) frame.contentWindow.postMessage(Object.assign({source: "livehost"}, message), origin);
  }

  function ensureFrame() {
    if (frame) return;
    var q = {color: color, lang: lang, parent: location.origin, position: position, character: data.character,
      avatar: data.avatar, title: data.title, token: data.tokenUrl ? "parent" : ""};
    var query = [];
    for (var key in q) if (Object.prototype.hasOwnProperty.call(q, key) && q[key]) query.push(key + "=" + encodeURIComponent(q[key]));
    frame = document.createElement("iframe");
    frame.title = data.title || (lang.indexOf("zh") === 0 ? "客服聊天" : "Chat");
    frame.allow = "microphone; autoplay";
    frame.src = origin + "/widget.html?" + query.join("&");
    panel.appendChild(frame);
  }

  function open() {
    if (opened) return;
    ensureFrame();
    opened = true;
    panel.classList.add("open");
    launcher.setAttribute("aria-expanded", "true");
    launcher.setAttribute("aria-label", lang.indexOf("zh") === 0 ? "关闭聊天" : "Close chat");
    post({type: "opened"});
    setTimeout(function () { frame.focus(); }, 50);
    emit("livehost:open", {character: data.character || null});
  }

  function close() {
    if (!opened) return;
    opened = false;
    panel.classList.remove("open");
    launcher.setAttribute("aria-expanded", "false");
    launcher.setAttribute("aria-label", label);
    post({type: "closed"});
    launcher.focus();
    emit("livehost:close", {character: data.character || null});
  }

  function sendToken() {  // the site's backend mints the token (data-token-url); the panel asks for it
    var request = new XMLHttpRequest();  // XHR, not fetch: a page that replaces window.fetch cannot break this
    request.open("POST", data.tokenUrl);
    request.withCredentials = true;
    request.onload = function () {
      var value = null;
      try { var body = JSON.parse(request.responseText); value = body.value || (body.client_secret || {}).value; } catch (e) { /* below */ }
      post({type: "token", value: value, status: request.status});
    };
    request.onerror = function () { post({type: "token", value: null, status: 0}); };
    request.send("{}");
  }

  window.addEventListener("message", function (event) {
    if (!frame || event.source !== frame.contentWindow || event.origin !== origin) return;
    var m = event.data || {};
    if (m.source !== "livehost") return;
    if (m.type === "handoff") emit("livehost:handoff", m.detail);
    else if (m.type === "close") close();
    else if (m.type === "need-token" && data.tokenUrl) sendToken();
    else if (m.type === "ready") { frameReady = true; if (opened) post({type: "opened"}); }
  });
  launcher.addEventListener("click", function () { if (opened) close(); else open(); });
  root.addEventListener("keydown", function (e) { if (e.key === "Escape") close(); });

  window.livehostWidget = {open: open, close: close, toggle: function () { if (opened) close(); else open(); }};
  document.documentElement.appendChild(host);  // beside <body>: a transformed body cannot trap the fixed launcher
  if (data.open === "1") open();
})();
