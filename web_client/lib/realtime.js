// A tiny client for livehost's OpenAI Realtime endpoint, over WebRTC (voice as a media track, events on the
// `oai-events` data channel) or over a WebSocket (events and base64 PCM16 audio as JSON).
//
//   const token = await getClientToken(origin);             // POST /v1/realtime/client_secrets -> {value}
//   const conn = await connectWebRTC({origin, token, mic});  // or connectWebSocket({origin, token})
//   conn.on("response.output_audio_transcript.delta", (e) => ...);  conn.on("*", (e) => ...);
//   conn.send({type: "response.create"});  conn.close();

/** The server refused our credentials (HTTP 401/403). */
export class AuthError extends Error {}
/** The server could not be reached at all. */
export class NetworkError extends Error {}
/** WebRTC could not connect (ICE/DTLS did not complete, or the server would not take the offer). */
export class WebRTCError extends Error {}

async function detail(response) {
  try {
    const body = await response.json();
    return body.detail || (body.error && body.error.message) || JSON.stringify(body);
  } catch {
    return response.statusText || `HTTP ${response.status}`;
  }
}

async function request(url, options) {
  try {
    return await fetch(url, options);
  } catch (err) {
    throw new NetworkError(`cannot reach ${new URL(url).host} (${err.message})`);
  }
}

/** The characters a session can pick: [{id, name, greeting, languages, mode, avatar, emotions}]. A server with
 * API keys lists them for a client token (or when it makes them public: server.public_metrics). */
export async function listCharacters(origin, token) {
  const r = await request(`${origin}/v1/characters`, token ? {headers: {Authorization: `Bearer ${token}`}} : {});
  if (r.status === 401 || r.status === 403) throw new AuthError(await detail(r));
  if (!r.ok) throw new Error(await detail(r));
  return (await r.json()).data;
}

/** A client token handed to the page in its address, `page.html#token=ek_...` (a fragment never reaches a
 * server's logs): an operator mints it with the API key (e.g. for an OBS overlay), and the page never sees the key. */
export function tokenFromAddress() {
  const found = new URLSearchParams(location.hash.slice(1)).get("token");
  return found || undefined;
}

/** A short-lived client token. `tokenUrl` may be your own backend's endpoint (same answer shape). */
export async function getClientToken(origin, tokenUrl) {
  const r = await request(tokenUrl || `${origin}/v1/realtime/client_secrets`, {
    method: "POST", headers: {"Content-Type": "application/json"},
    body: JSON.stringify({expires_after: {anchor: "created_at", seconds: 600}}),
  });
  if (r.status === 401 || r.status === 403) throw new AuthError(await detail(r));
  if (!r.ok) throw new Error(`the token endpoint answered ${r.status}: ${await detail(r)}`);
  const body = await r.json();
  return body.value || (body.client_secret && body.client_secret.value);
}

/** What both transports share: listeners by event type ("*" gets everything), a send queue, close. */
class Connection {
  constructor(transport) {
    this.transport = transport;
    this.listeners = new Map();
    this.closed = false;
    this.session = null;
  }

  on(type, fn) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(fn);
    return () => this.listeners.get(type).delete(fn);
  }

  dispatch(event) {
    if (event.type === "session.created" || event.type === "session.updated") this.session = event.session;
    for (const key of [event.type, "*"]) {
      for (const fn of this.listeners.get(key) || []) {
        try { fn(event); } catch (err) { console.error("livehost listener failed", err); }
      }
    }
  }

  ended(reason) {
    if (this.closed) return;
    this.closed = true;
    this.dispatch({type: "connection.closed", reason});
  }
}

function waitFor(condition, subscribe, timeoutMs, message) {
  return new Promise((resolve, reject) => {
    if (condition()) return resolve();
    const timer = setTimeout(() => { unsubscribe(); reject(new WebRTCError(message)); }, timeoutMs);
    const unsubscribe = subscribe(() => {
      if (condition()) { clearTimeout(timer); unsubscribe(); resolve(); }
    });
  });
}

class RTCConnection extends Connection {
  constructor(pc, channel) {
    super("webrtc");
    this.pc = pc;
    this.channel = channel;
    this.queue = [];
    this.callUrl = null;
    channel.onmessage = (m) => this.dispatch(JSON.parse(m.data));
    channel.onopen = () => { for (const e of this.queue.splice(0)) channel.send(JSON.stringify(e)); };
    channel.onclose = () => this.ended("the data channel closed");
    pc.addEventListener("connectionstatechange", () => {
      if (pc.connectionState === "failed" || pc.connectionState === "closed") this.ended(`WebRTC ${pc.connectionState}`);
    });
  }

  send(event) {
    if (this.channel.readyState === "open") this.channel.send(JSON.stringify(event));
    else if (this.channel.readyState === "connecting") this.queue.push(event);
  }

  /** Replace what the microphone sends (a MediaStreamTrack, or null for nothing) without renegotiating. */
  setMicrophone(track) {
    return this.sender.replaceTrack(track);
  }

  close() {
    if (this.callUrl && !this.closed) hangup(this.callUrl, this.token);
    this.ended("closed by the page");
    this.pc.close();
  }
}

/**
 * Opens a WebRTC call: offer -> POST /v1/realtime/calls -> answer. aiortc does not trickle ICE, so the offer
 * is sent with all its candidates. `mic` is a MediaStream (or null: receive only). `onTrack(track, stream)`
 * gets the voice (audio) and, when the server has one, the avatar (video).
 */
export async function connectWebRTC({origin, token, mic, onTrack, iceTimeoutMs = 8000}) {
  const pc = new RTCPeerConnection();
  const channel = pc.createDataChannel("oai-events");
  const conn = new RTCConnection(pc, channel);
  conn.token = token;  // the call is hung up with the credential that made it
  try {
    const track = mic && mic.getAudioTracks()[0];  // none yet: the microphone can join later (setMicrophone)
    conn.sender = pc.addTransceiver(track || "audio", {direction: "sendrecv", streams: mic ? [mic] : []}).sender;
    pc.addTransceiver("video", {direction: "recvonly"});  // the avatar's video, when the server sends one
    pc.ontrack = (e) => onTrack && onTrack(e.track, e.streams[0] || new MediaStream([e.track]));
    await pc.setLocalDescription(await pc.createOffer());
    await waitFor(() => pc.iceGatheringState === "complete",
      (fn) => { pc.addEventListener("icegatheringstatechange", fn); return () => pc.removeEventListener("icegatheringstatechange", fn); },
      5000, "could not gather ICE candidates").catch(() => {});  // use what was gathered
    const headers = {"Content-Type": "application/sdp"};
    if (token) headers.Authorization = `Bearer ${token}`;
    const r = await request(`${origin}/v1/realtime/calls?model=livehost`, {method: "POST", body: pc.localDescription.sdp, headers});
    if (r.status === 401 || r.status === 403) throw new AuthError(await detail(r));
    if (!r.ok) throw new WebRTCError(`the server did not take the call (${r.status}: ${await detail(r)})`);
    const location = r.headers.get("Location");
    if (location) conn.callUrl = new URL(location, origin).href;
    await pc.setRemoteDescription({type: "answer", sdp: await r.text()});
    await waitFor(() => pc.connectionState === "connected" && channel.readyState === "open",
      (fn) => {
        pc.addEventListener("connectionstatechange", fn); channel.addEventListener("open", fn);
        return () => { pc.removeEventListener("connectionstatechange", fn); channel.removeEventListener("open", fn); };
      }, iceTimeoutMs, `the connection did not complete within ${Math.round(iceTimeoutMs / 1000)} s (ICE failure)`);
    return conn;
  } catch (err) {
    conn.closed = true;
    if (conn.callUrl) hangup(conn.callUrl, token);
    pc.close();
    throw err;
  }
}

function hangup(callUrl, token) {
  fetch(`${callUrl}/hangup`, {method: "POST", headers: token ? {Authorization: `Bearer ${token}`} : {}}).catch(() => {});
}

class WSConnection extends Connection {
  constructor(ws) {
    super("websocket");
    this.ws = ws;
    ws.onmessage = (m) => this.dispatch(JSON.parse(m.data));
    ws.onclose = (e) => this.ended(e.reason || `the connection closed (code ${e.code})`);
  }

  send(event) {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(event));
  }

  close() {
    this.ended("closed by the page");
    this.ws.close();
  }
}

/** Opens a WebSocket session; resolves once the server has sent `session.created`. With `path` (a read-only event
 * feed such as the livestream host's /v1/stream/events) it resolves once open: nothing is sent there first. */
export function connectWebSocket({origin, token, path, timeoutMs = 10000}) {
  const url = `${origin.replace(/^http/, "ws")}${path || "/v1/realtime?model=livehost"}`;
  const protocols = ["realtime"];
  if (token) protocols.push(`openai-insecure-api-key.${token}`);
  return new Promise((resolve, reject) => {
    let ws;
    try { ws = new WebSocket(url, protocols); } catch (err) { return reject(new NetworkError(err.message)); }
    const timer = setTimeout(() => { ws.close(); reject(new NetworkError("the WebSocket did not open in time")); }, timeoutMs);
    if (path) ws.onopen = () => { clearTimeout(timer); resolve(new WSConnection(ws)); };
    ws.onmessage = (m) => {
      const event = JSON.parse(m.data);
      if (event.type !== "session.created") return;
      clearTimeout(timer);
      const conn = new WSConnection(ws);
      conn.session = event.session;
      resolve(conn);
    };
    ws.onclose = (e) => {
      clearTimeout(timer);
      // Browsers hide the HTTP status of a refused upgrade; the token was valid a moment ago, so say both.
      reject(new NetworkError(e.reason || "the server closed the WebSocket (unreachable, or the token was refused)"));
    };
  });
}
