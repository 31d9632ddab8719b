// The stream overlay (overlay.html): the avatar alone on a transparent background, for OBS-style browser
// sources (the page's audio is the host's voice: let the browser source capture it).
//
// Query parameters (all optional):
//   character=ID     the character (GET /v1/characters); default: the server's default
//   captions=1       show the host's words as it speaks them, at the bottom
//   mic=1            listen to the default microphone (hands-free, server VAD), so the streamer can talk to it
//   silence_ms=N     silence that ends a spoken turn (server VAD silence_duration_ms)
//   bg=COLOUR        a background instead of transparency, e.g. bg=%2300ff00 for a chroma key
//
// For now the overlay opens its own session (over the WebSocket, so the face is drawn here on a transparent
// canvas). A controller page on the same origin drives it with a BroadcastChannel named "livehost-overlay":
//   new BroadcastChannel("livehost-overlay").postMessage({type: "say", text: "Welcome, everyone!"})
//     -> the text becomes a user message and the host answers it aloud
//   ... .postMessage({type: "interrupt"})  -> the host stops talking
import {listCharacters} from "./lib/realtime.js";
import {LiveSession} from "./lib/session.js";
import {Avatar} from "./lib/avatar.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const bg = params.get("bg");
if (bg && CSS.supports("color", bg)) document.body.style.background = bg;

const avatar = new Avatar($("avatar"));
avatar.start();
const session = new LiveSession({origin: location.origin, character: params.get("character") || undefined,
  transport: "websocket", silenceMs: params.get("silence_ms") ? Number(params.get("silence_ms")) : undefined, avatar});
window.livehostDebug = Object.assign(session.debug, {avatar});

// ---- captions -----------------------------------------------------------------------------------------------
const captions = params.get("captions") === "1";
$("captions").hidden = !captions;
let captionId = null;
let fadeTimer;
function caption(responseId, delta) {
  if (!captions) return;
  const text = $("caption-text");
  if (responseId !== captionId) { captionId = responseId; text.textContent = ""; }
  text.textContent = (text.textContent + delta).split(/(?<=[.!?。！？])\s+/).slice(-2).join(" ");
  $("captions").classList.remove("fade");
  clearTimeout(fadeTimer);
}
session.on("response.output_audio_transcript.delta", (e) => caption(e.response_id, e.delta));
session.on("response.output_text.delta", (e) => caption(e.response_id, e.delta));
session.on("state", (state) => {
  if (state === "speaking" || state === "thinking") return;
  clearTimeout(fadeTimer);
  fadeTimer = setTimeout(() => $("captions").classList.add("fade"), 2500);
});

// ---- the session --------------------------------------------------------------------------------------------
function notice(message) {
  $("notice").textContent = message;
  $("notice").hidden = !message;
}

async function start() {
  try {
    const wanted = params.get("character");
    const all = await listCharacters(location.origin);
    const character = all.find((c) => c.id === wanted) || all.find((c) => c.id === "lumi") || all[0];
    await avatar.load(character ? character.avatar : "lumi");
    await session.connect({withMic: params.get("mic") === "1"});
    notice("");
  } catch (err) {
    notice(`${err.message} Retrying in 10 s.`);  // unattended in OBS: keep trying
    setTimeout(start, 10000);
  }
}
session.on("lost", () => { notice("The connection was lost. Reconnecting…"); setTimeout(start, 2000); });

new BroadcastChannel("livehost-overlay").onmessage = (m) => {
  const msg = m.data || {};
  if (msg.type === "say" && msg.text) session.sendText(String(msg.text));
  else if (msg.type === "interrupt") session.interrupt();
};

start();
