// The stream overlay (overlay.html): the avatar alone on a transparent background, for OBS-style browser
// sources (the page's audio is the host's voice: let the browser source capture it).
//
// Query parameters (all optional):
//   character=ID     the character (GET /v1/characters); default: the server's default
//   captions=1       show the host's words as it speaks them, at the bottom
//   mic=1            listen to the default microphone (hands-free, server VAD), so the streamer can talk to it
//   silence_ms=N     silence that ends a spoken turn (server VAD silence_duration_ms)
//   bg=COLOUR        a background instead of transparency, e.g. bg=%2300ff00 for a chroma key
//   stream=1         show and voice the livestream host (`livehost stream`) instead of a session of its own: its
//                    character, its answers to chat, cut at once when an operator skips or the streamer talks
//                    (/v1/stream/events; reconnects by itself). character, mic, silence_ms and the controller below
//                    do not apply: operators use /v1/stream/say and /v1/stream/skip
//   asker=1          with stream=1: the name of the viewer being answered, above the captions
//   #token=ek_...    (in the fragment) a client token the operator minted with the API key, for a server with
//                    api_keys: POST /v1/realtime/client_secrets {"expires_after": {"seconds": 86400}}
//
// Without stream=1 the overlay opens its own session (over the WebSocket, so the face is drawn here on a transparent
// canvas). A controller page on the same origin drives it with a BroadcastChannel named "livehost-overlay":
//   new BroadcastChannel("livehost-overlay").postMessage({type: "say", text: "Welcome, everyone!"})
//     -> the text becomes a user message and the host answers it aloud
//   ... .postMessage({type: "interrupt"})  -> the host stops talking
import {listCharacters, tokenFromAddress} from "./lib/realtime.js";
import {LiveSession} from "./lib/session.js";
import {Avatar} from "./lib/avatar.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const bg = params.get("bg");
if (bg && CSS.supports("color", bg)) document.body.style.background = bg;

const avatar = new Avatar($("avatar"));
avatar.start();
const stream = params.get("stream") === "1";
const session = new LiveSession({origin: location.origin, transport: stream ? "stream" : "websocket", avatar,
  character: params.get("character") || undefined, token: tokenFromAddress(),
  silenceMs: params.get("silence_ms") ? Number(params.get("silence_ms")) : undefined});
window.livehostDebug = Object.assign(session.debug, {avatar});

// ---- captions -----------------------------------------------------------------------------------------------
const captions = params.get("captions") === "1";
const asker = stream && params.get("asker") === "1";
$("captions").hidden = !captions && !asker;
$("caption-text").hidden = !captions;
let captionId = null;
let fadeTimer;
function show() {
  $("captions").classList.remove("fade");
  clearTimeout(fadeTimer);
}
function caption(responseId, delta) {
  if (!captions) return;
  const text = $("caption-text");
  if (responseId !== captionId) { captionId = responseId; text.textContent = ""; }
  text.textContent = (text.textContent + delta).split(/(?<=[.!?。！？])\s+/).slice(-2).join(" ");
  show();
}
session.on("livehost.stream.turn", (e) => {  // a new answer: who it is for (idle talk and operator lines: nobody)
  $("asker").textContent = e.viewer || "";
  $("asker").hidden = !asker || !e.viewer;
  if (captions) $("caption-text").textContent = "";
  if (asker && e.viewer) show();
});
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

let characters = [];
async function showCharacter(wanted) {
  const character = characters.find((c) => c.id === wanted) || characters.find((c) => c.id === "lumi") || characters[0];
  const name = character ? character.avatar : "lumi";
  if (avatar.name !== name) await avatar.load(name);
}

async function start() {
  try {
    characters = await listCharacters(location.origin, session.o.token);
    if (!stream) await showCharacter(params.get("character"));  // stream: the host's, from livehost.stream.state
    await session.connect({withMic: !stream && params.get("mic") === "1"});
    notice("");
  } catch (err) {
    notice(`${err.message} Retrying in 10 s.`);  // unattended in OBS: keep trying
    setTimeout(start, 10000);
  }
}
session.on("lost", () => { notice("The connection was lost. Reconnecting…"); setTimeout(start, 2000); });
session.on("livehost.stream.state", (e) => showCharacter(e.character));

if (!stream) new BroadcastChannel("livehost-overlay").onmessage = (m) => {
  const msg = m.data || {};
  if (msg.type === "say" && msg.text) session.sendText(String(msg.text));
  else if (msg.type === "interrupt") session.interrupt();
};

start();
