// The widget's chat panel (widget.html, inside the iframe that widget.js opens): text first over the WebSocket,
// voice on request, knowledge sources under answers, and "Talk to a person", which the embedding page receives
// as the `livehost:handoff` event (widget.js documents it).
import {AuthError, listCharacters} from "./lib/realtime.js";
import {LiveSession} from "./lib/session.js";
import {Avatar} from "./lib/avatar.js";
import {ChatLog} from "./lib/chat-log.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const STRINGS = {
  en: {placeholder: "Ask a question…", message: "Message", send: "Send", voiceOn: "Turn voice on",
    voiceOff: "Turn voice off", handoff: "Talk to a person", close: "Close chat", retry: "Try again",
    handoffNote: "A person from our team will take over here. They will see this conversation.",
    assistant: "Assistant", you: "You", source: "Source", sources: "Sources", interrupted: "interrupted",
    state: {idle: "Online", connecting: "Connecting…", listening: "Online", hearing: "Listening…",
      thinking: "Typing…", speaking: "Answering…"}, voiceHint: "Voice is on: just speak, or type.",
    chat: "Chat", voiceListening: "Listening", lookingUp: (what) => `Looking up ${what}…`},
  zh: {placeholder: "请输入您的问题…", message: "消息", send: "发送", voiceOn: "开启语音", voiceOff: "关闭语音",
    handoff: "转人工客服", close: "关闭聊天", retry: "重试", handoffNote: "人工客服将在这里接手，并能看到本次对话。",
    assistant: "助手", you: "我", source: "来源", sources: "来源", interrupted: "已打断",
    state: {idle: "在线", connecting: "连接中…", listening: "在线", hearing: "正在听…", thinking: "正在输入…",
      speaking: "正在回答…"}, voiceHint: "语音已开启：直接说话，或输入文字。", chat: "聊天",
    voiceListening: "正在聆听", lookingUp: (what) => `正在查询 ${what}…`},
};
const lang = (params.get("lang") || "en").toLowerCase();
const T = STRINGS[lang.split("-")[0]] || STRINGS.en;
const parentOrigin = params.get("parent");
const embedded = window.parent !== window && parentOrigin;
let character = null;
let handedOff = {};
let noteAfter = null;
let retry = null;

document.documentElement.lang = lang;
const color = params.get("color");
if (color && CSS.supports("color", color)) document.documentElement.style.setProperty("--accent", color);
for (const [id, text] of [["message-label", T.message], ["handoff-text", T.handoff]]) $(id).textContent = text;
$("message").placeholder = T.placeholder;
$("send").setAttribute("aria-label", T.send);
$("close").setAttribute("aria-label", T.close);
$("mic").setAttribute("aria-label", T.voiceOn);
$("retry").textContent = T.retry;

const big = params.get("avatar") === "on";
$("stage").hidden = !big;
const avatar = new Avatar(big ? $("avatar") : $("face"));
avatar.start();
const log = new ChatLog($("log"), {assistantName: T.assistant, labels: T});
const session = new LiveSession({origin: location.origin, character: params.get("character") || undefined,
  transport: "websocket", output: "text", lang: lang.split("-")[0], avatar});
window.livehostDebug = Object.assign(session.debug, {avatar});

function toParent(message) {
  if (embedded) window.parent.postMessage({source: "livehost", ...message}, parentOrigin);
}

function showAlert(message, onRetry) {
  $("alert-text").textContent = message;
  $("alert").hidden = false;
  retry = onRetry;
}

// ---- the character and the connection ---------------------------------------------------------------------
async function loadCharacter(token) {
  try {
    const all = await listCharacters(location.origin, token);
    character = all.find((c) => c.id === params.get("character")) || all[0];
  } catch {
    character = null;  // the connection attempt below explains what is wrong
  }
  const name = params.get("title") || (character ? character.name : T.chat);
  $("title").textContent = name;
  document.title = name;
  log.assistantName = character ? character.name : T.assistant;
  if (character && character.greeting && !token) log.say(character.greeting);
  await avatar.load(character ? character.avatar : "pip");
}

function tokenFromParent() {
  return new Promise((resolve) => {
    const onMessage = (event) => {
      const m = event.data || {};
      if (event.source !== window.parent || event.origin !== parentOrigin || m.type !== "token") return;
      window.removeEventListener("message", onMessage);
      resolve(m.value);
    };
    window.addEventListener("message", onMessage);
    setTimeout(() => { window.removeEventListener("message", onMessage); resolve(null); }, 15000);
    toParent({type: "need-token"});
  });
}

let connecting = null;
function connect() {
  if (session.connected) return Promise.resolve(true);
  connecting = connecting || (async () => {
    $("alert").hidden = true;
    try {
      if (params.get("token") === "parent") {  // the site's backend mints it: a fresh one for each connection
        session.o.token = await tokenFromParent();
        if (!session.o.token) throw session.explain(new AuthError("the site's token endpoint gave no token"));
      }
      await session.connect({withMic: false});
      // a server with API keys lists characters only for a token: now there is one, show who is answering
      if (!character && session.o.token) await loadCharacter(session.o.token);
      return true;
    } catch (err) {
      showAlert(err.message, connect);
      return false;
    } finally {
      connecting = null;
    }
  })();
  return connecting;
}

// ---- voice --------------------------------------------------------------------------------------------------
async function setVoice(on) {
  const mic = $("mic");
  if (on) {
    if (!(await connect())) return;
    session.set({output: "audio"});
    try {
      await session.enableMic();
    } catch (err) {
      session.set({output: "text"});
      showAlert(err.message, () => setVoice(true));
      return;
    }
    log.note(T.voiceHint);
  } else {
    session.interrupt();
    session.disableMic();
    session.set({output: "text"});
  }
  mic.setAttribute("aria-pressed", String(on));
  mic.setAttribute("aria-label", on ? T.voiceOff : T.voiceOn);
}

// ---- handoff ------------------------------------------------------------------------------------------------
function handoff(reason, responseId) {
  if (reason === handedOff.reason && Date.now() - handedOff.at < 3000) return;  // one press, one event
  handedOff = {reason, at: Date.now()};
  if (responseId) noteAfter = responseId; else log.note(T.handoffNote);  // after the host's own words
  toParent({type: "handoff", detail: {character: character ? character.id : params.get("character"), reason,
    transcript: log.transcript(), at: new Date().toISOString()}});
}

// ---- events -------------------------------------------------------------------------------------------------
const lookups = new Map();  // call_id -> the tool being called, until its result comes: the status line says so
function showStatus(state) {
  const looking = [...lookups.values()].pop();
  $("status").textContent = looking ? T.lookingUp(looking.replace(/_/g, " "))
    : state === "listening" && session.mic ? T.voiceListening : T.state[state] || state;
}
session.on("state", (state) => {
  showStatus(state);
  $("dot").dataset.state = state;
});
session.on("conversation.item.input_audio_transcription.delta", (e) => log.userPartial(e.item_id, e.delta));
session.on("conversation.item.input_audio_transcription.completed", (e) => log.userFinal(e.item_id, e.transcript));
session.on("response.output_audio_transcript.delta", (e) => log.replyDelta(e.response_id, e.delta));
session.on("response.output_text.delta", (e) => log.replyDelta(e.response_id, e.delta));
session.on("livehost.knowledge", (e) => log.replySources(e.response_id, e.sources));
session.on("livehost.handoff", (e) => handoff(e.reason || "offered", e.response_id));
session.on("response.output_item.added", (e) => {  // a tool call: say what is being looked up meanwhile
  if (e.item && e.item.type === "function_call") { lookups.set(e.item.call_id, e.item.name); showStatus(session.state); }
});
session.on("response.output_item.done", (e) => {  // a call cut off or refused is never answered
  if (e.item && e.item.type === "function_call" && e.item.status !== "completed") lookups.delete(e.item.call_id);
  showStatus(session.state);
});
session.on("conversation.item.added", (e) => {  // the result is in: the answer follows
  if (e.item && e.item.type === "function_call_output" && lookups.delete(e.item.call_id)) showStatus(session.state);
});
session.on("response.done", (e) => {
  log.replyDone(e.response);
  if (noteAfter === e.response.id) { noteAfter = null; log.note(T.handoffNote); }
});
session.on("error", (e) => log.note(e.error ? e.error.message : "error"));
session.on("lost", () => { lookups.clear(); showAlert("The connection was lost.", connect); });

$("composer").addEventListener("submit", async (e) => {
  e.preventDefault();
  const text = $("message").value.trim();
  if (!text || !(await connect())) return;
  $("message").value = "";
  log.userText(text);
  session.sendText(text);
});
$("mic").addEventListener("click", () => setVoice($("mic").getAttribute("aria-pressed") !== "true"));
$("handoff").addEventListener("click", () => handoff("user_requested"));
$("retry").addEventListener("click", () => retry && retry());
$("close").addEventListener("click", () => toParent({type: "close"}));
document.addEventListener("keydown", (e) => { if (e.key === "Escape") toParent({type: "close"}); });
window.addEventListener("message", (event) => {
  const m = event.data || {};
  if (event.source !== window.parent || event.origin !== parentOrigin || m.source !== "livehost") return;
  if (m.type === "opened") {
    $("message").focus();
    connect();
  } else if (m.type === "closed" && session.mic) {
    setVoice(false);  // closing the panel never leaves the microphone on
  }
});

await loadCharacter();
toParent({type: "ready"});
if (!embedded) connect();
