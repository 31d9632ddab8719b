// The chat page at /: pick a character, talk hands-free or push-to-talk, or type; see the avatar and the live
// transcript; interrupt by voice or with the button.
//
// Query parameters (all optional):
//   character=ID          preselect a character (GET /v1/characters)
//   transport=auto        auto (WebRTC, falling back to the WebSocket), webrtc, or websocket
//   mode=vad              vad (hands-free, server VAD) or ptt (push-to-talk)
//   silence_ms=N          silence that ends your turn (server VAD silence_duration_ms, 100..5000)
//   ice_timeout_ms=8000   how long WebRTC may take to connect before falling back
//   autostart=1           connect on load (kiosks; browsers may still want a click for audio)
//
// For tests and debugging, window.livehostDebug holds {events, levels: [[ms, rms]...], state, transport, avatar}.
import {listCharacters, tokenFromAddress} from "./lib/realtime.js";
import {LiveSession} from "./lib/session.js";
import {Avatar} from "./lib/avatar.js";
import {ChatLog} from "./lib/chat-log.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const number = (name) => (params.get(name) ? Number(params.get(name)) : undefined);
const STATE_TEXT = {idle: "Not connected", connecting: "Connecting…", listening: "Listening", hearing: "Hearing you…",
  thinking: "Thinking…", speaking: "Speaking"};

let characters = [];
let current = null;
let retry = null;
const avatar = new Avatar($("avatar"));
avatar.start();
const log = new ChatLog($("log"), {onChange: () => { $("empty").hidden = $("log").children.length > 0; }});
const session = new LiveSession({
  origin: location.origin, character: params.get("character") || undefined,
  transport: params.get("transport") || "auto", mode: params.get("mode") === "ptt" ? "ptt" : "vad",
  silenceMs: number("silence_ms"), iceTimeoutMs: number("ice_timeout_ms") || 8000, avatar, onVideo: showVideo,
  token: tokenFromAddress(),  // index.html#token=ek_...: a token the operator minted (servers with API keys)
});
window.livehostDebug = Object.assign(session.debug, {avatar, avatarDigest});

/** A checksum of the avatar as shown (video or canvas): tests watch it change while the host speaks. */
function avatarDigest() {
  const probe = avatarDigest.canvas || (avatarDigest.canvas = Object.assign(document.createElement("canvas"), {width: 64, height: 64}));
  const g = probe.getContext("2d", {willReadFrequently: true});
  g.clearRect(0, 0, 64, 64);
  g.drawImage($("video").hidden ? $("avatar") : $("video"), 0, 0, 64, 64);
  let h = 0;
  for (const v of g.getImageData(0, 0, 64, 64).data) h = (h * 31 + v) >>> 0;
  return h;
}
document.querySelector(`input[name=mode][value=${session.o.mode}]`).checked = true;

// ---- errors and notices --------------------------------------------------------------------------------------
function showAlert(message, {onRetry, textOnly = false} = {}) {
  $("alert-text").textContent = message;
  $("alert").hidden = false;
  retry = onRetry;
  $("retry").hidden = !onRetry;
  $("text-only").hidden = !textOnly;
}

function hideAlert() { $("alert").hidden = true; }

let toastTimer;
function toast(message, ms = 5000) {
  $("toast").textContent = message;
  $("toast").hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { $("toast").hidden = true; }, ms);
}

// ---- characters ---------------------------------------------------------------------------------------------
async function loadCharacters() {
  hideAlert();
  try {
    characters = await listCharacters(location.origin, session.o.token);
  } catch (err) {
    showAlert(session.explain(err).message, {onRetry: loadCharacters});
    return;
  }
  const select = $("character");
  select.replaceChildren(...characters.map((c) => new Option(c.name, c.id)));
  select.disabled = false;
  const wanted = params.get("character");
  const pick = characters.find((c) => c.id === wanted) || characters.find((c) => c.id === "lumi") || characters[0];
  if (pick) await choose(pick.id);
  if (params.get("autostart") === "1") start();
}

async function choose(id) {
  current = characters.find((c) => c.id === id);
  if (!current) return;
  $("character").value = id;
  log.assistantName = current.name;
  $("avatar").setAttribute("aria-label", `${current.name}, the virtual host`);
  $("greeting").textContent = current.greeting ? `${current.name}: “${current.greeting}”` : `Say hello to ${current.name}.`;
  const url = new URL(location.href);
  url.searchParams.set("character", id);
  history.replaceState(null, "", url);
  const changed = session.o.character && session.o.character !== id;
  if (session.connected) {
    session.set({character: id});
    if (changed) log.note(`You are now talking to ${current.name}.`);
  } else {
    session.o.character = id;
  }
  await avatar.load(current.avatar || "lumi");
}

// ---- connecting ---------------------------------------------------------------------------------------------
async function start({withMic = true} = {}) {
  hideAlert();
  try {
    if (session.connected && withMic) await session.enableMic();
    else await session.connect({withMic});
  } catch (err) {
    showAlert(err.message, {onRetry: () => start({withMic}), textOnly: err.kind === "mic"});
    return false;
  } finally {
    controls();
  }
  $("transport").textContent = session.transport === "webrtc" ? "Connected over WebRTC." : "Connected over WebSocket.";
  return true;
}

/** The server's avatar video (WebRTC) replaces the drawn avatar once frames arrive; null brings it back. */
function showVideo(stream) {
  const video = $("video");
  const show = (on) => {
    video.hidden = !on;
    video.parentElement.classList.toggle("video", on);
    $("avatar").hidden = on;
    if (on) avatar.stop(); else avatar.start();
  };
  video.srcObject = stream;
  if (!stream) return show(false);
  const firstFrame = () => { if (video.srcObject === stream && video.videoWidth) show(true); };
  if (video.requestVideoFrameCallback) video.requestVideoFrameCallback(firstFrame);
  else video.onresize = firstFrame;
  video.play().catch(() => {});
}

function controls() {
  const on = session.connected;
  const ptt = session.o.mode === "ptt";
  $("start").hidden = on && !!session.mic;
  $("start").textContent = on ? "Turn on the microphone" : "Start talking";
  $("talk").hidden = !(on && session.mic && ptt);
  $("talk-hint").hidden = $("talk").hidden;
  $("interrupt").hidden = !on;
  $("interrupt").disabled = !["thinking", "speaking"].includes(session.state);
  $("end").hidden = !on;
  if (!on) $("transport").textContent = "";
  if (on) $("empty-hint").textContent = session.mic ? (ptt ? "Hold the button while you speak, or type below."
    : "I'm listening: just speak, or type below.") : "Type below, or turn on the microphone.";
}

// ---- session events -----------------------------------------------------------------------------------------
session.on("state", (state) => {
  $("status").dataset.state = state;
  $("status-text").textContent = STATE_TEXT[state] || state;
  controls();
});
session.on("notice", (message) => toast(message, 8000));
session.on("lost", (reason) => {
  showAlert(`The connection to the server was lost (${reason}).`, {onRetry: () => start()});
  controls();
});
session.on("conversation.item.input_audio_transcription.delta", (e) => log.userPartial(e.item_id, e.delta));
session.on("conversation.item.input_audio_transcription.completed", (e) => log.userFinal(e.item_id, e.transcript));
session.on("response.output_audio_transcript.delta", (e) => log.replyDelta(e.response_id, e.delta));
session.on("response.output_text.delta", (e) => log.replyDelta(e.response_id, e.delta));
session.on("livehost.knowledge", (e) => log.replySources(e.response_id, e.sources));
session.on("livehost.handoff", () => log.note(`${current ? current.name : "The host"} suggests talking to a person.`));
session.on("response.done", (e) => log.replyDone(e.response));
session.on("error", (e) => {
  const code = e.error && e.error.code;
  toast(code === "input_audio_buffer_commit_empty" ? "I didn't hear anything: hold the button while you speak."
    : `The server said: ${e.error ? e.error.message : "an error"}`);
});

// ---- controls -----------------------------------------------------------------------------------------------
$("character").addEventListener("change", (e) => choose(e.target.value));
$("start").addEventListener("click", () => start());
$("retry").addEventListener("click", () => retry && retry());
$("text-only").addEventListener("click", () => start({withMic: false}));
$("interrupt").addEventListener("click", () => session.interrupt());
$("end").addEventListener("click", () => {
  session.close();
  log.note("Conversation ended.");
  controls();
});
for (const radio of document.querySelectorAll("input[name=mode]")) {
  radio.addEventListener("change", () => {
    if (session.connected) session.set({mode: radio.value}); else session.o.mode = radio.value;
    controls();
  });
}

const talk = $("talk");
talk.addEventListener("pointerdown", (e) => { talk.setPointerCapture(e.pointerId); session.pressTalk(); });
for (const type of ["pointerup", "pointercancel", "lostpointercapture"]) talk.addEventListener(type, () => session.releaseTalk());
const typing = (el) => el && (el.tagName === "INPUT" && el.type === "text" || el.tagName === "SELECT" || el.tagName === "TEXTAREA");
document.addEventListener("keydown", (e) => {
  if (e.code !== "Space" || talk.hidden || typing(e.target) || e.repeat) return;
  e.preventDefault();
  session.pressTalk();
});
document.addEventListener("keyup", (e) => {
  if (e.code !== "Space" || talk.hidden || typing(e.target)) return;
  e.preventDefault();
  session.releaseTalk();
});

$("composer").addEventListener("submit", async (e) => {
  e.preventDefault();
  const input = $("message");
  const text = input.value.trim();
  if (!text) return;
  if (!session.connected && !(await start({withMic: false}))) return;
  input.value = "";
  log.userText(text);
  session.sendText(text);
});

controls();
loadCharacters();
