// One conversation with a livehost character, for any page (chat, widget, overlay): the client token, the
// transport (WebRTC, falling back to the WebSocket when it fails), the microphone (hands-free or push-to-talk),
// reply playback, interrupting, the listening/thinking/speaking state, and the avatar's hooks.
import {AuthError, NetworkError, connectWebRTC, connectWebSocket, getClientToken} from "./realtime.js";
import {LiveError, explain} from "./errors.js";
import {AudioOut, Microphone} from "./audio.js";

export {LiveError};

export class LiveSession {
  /** options: origin, character, transport ("auto" | "webrtc" | "websocket" | "stream"), mode ("vad" | "ptt"),
   * silenceMs, iceTimeoutMs, output ("audio" | "text"), lang, tokenUrl, token (a ready token), avatar, onVideo(stream).
   * transport "stream": no conversation, only the livestream host's replies (/v1/stream/events), played and
   * lip-synced like this session's own; nothing is sent. */
  constructor(options) {
    this.o = {transport: "auto", mode: "vad", output: "audio", iceTimeoutMs: 8000, ...options};
    this.audio = new AudioOut();
    this.listeners = new Map();
    this.state = "idle";
    this.conn = null;
    this.mic = null;
    this.response = null;  // {id, itemId, done, doneAt, started, audio}
    this.debug = {events: [], levels: [], state: "idle", transport: null, session: this};
    this.audio.startMeter((rms, t) => this.onLevel(rms, t));
    if (this.o.avatar) {
      this.o.avatar.clock = () => this.clock();
      this.o.avatar.level = () => this.audio.level;
    }
  }

  on(type, fn) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(fn);
  }

  emit(type, data) {
    for (const fn of this.listeners.get(type) || []) fn(data);
  }

  get transport() { return this.conn ? this.conn.transport : null; }
  get connected() { return !!this.conn && !this.conn.closed; }

  sessionUpdate() {
    const {character, mode, silenceMs, output, lang} = this.o;
    const input = {turn_detection: mode === "ptt" ? null :
      {type: "server_vad", ...(silenceMs ? {silence_duration_ms: silenceMs} : {})}};
    if (lang) input.transcription = {language: lang};
    return {type: "session.update", session: {type: "realtime", output_modalities: [output], audio: {input},
      ...(character ? {livehost: {character}} : {})}};
  }

  /** Connect; `withMic` asks for the microphone first. Throws LiveError. */
  async connect({withMic = true} = {}) {
    if (this.connected) return;
    this.setState("connecting");
    try {
      await this.audio.resume();
      const token = this.o.token || await getClientToken(this.o.origin, this.o.tokenUrl);
      if (withMic) this.mic = await Microphone.open();
      const conn = await this.openTransport(token);
      this.conn = conn;
      if (conn.transport === "webrtc" && this.video && this.o.onVideo) this.o.onVideo(this.video);
      this.debug.transport = conn.transport;
      conn.on("*", (e) => this.onEvent(e));
      this.send(this.sessionUpdate());
      if (this.mic) await this.useMic();
    } catch (err) {
      if (this.conn) {  // connected, but the microphone could not join: start clean next time
        this.closing = true;
        this.conn.close();
        this.closing = false;
        this.conn = null;
      }
      if (this.mic) { this.mic.close(); this.mic = null; }
      this.setState("idle");
      throw this.explain(err);
    }
    this.refresh();
  }

  async openTransport(token) {
    const {origin, transport, iceTimeoutMs} = this.o;
    if (transport === "stream") return connectWebSocket({origin, token, path: "/v1/stream/events"});
    if (transport !== "websocket") {
      try {
        return await connectWebRTC({origin, token, mic: this.mic && this.mic.stream, iceTimeoutMs,
          onTrack: (track, stream) => this.onTrack(track, stream)});
      } catch (err) {
        this.video = null;
        if (err instanceof AuthError || err instanceof NetworkError || transport === "webrtc") throw err;
        this.emit("notice", `The direct voice link (WebRTC) could not be set up: ${err.message}. ` +
          "Switched to the WebSocket connection.");
      }
    }
    return connectWebSocket({origin, token});
  }

  explain(err) {
    return explain(err, this.o.origin);
  }

  /** Turn the microphone on in a session that started without it. */
  async enableMic() {
    if (this.mic) return;
    try {
      this.mic = await Microphone.open();
    } catch (err) {
      throw this.explain(err);
    }
    await this.useMic();
  }

  async useMic() {
    const ptt = this.o.mode === "ptt";
    if (this.conn.transport === "webrtc") {
      await this.conn.setMicrophone(this.mic.stream.getAudioTracks()[0]);
      this.mic.enabled = !ptt;
    } else {
      this.mic.sending = !ptt;
      await this.mic.capture(this.audio.ctx, (audio) => this.send({type: "input_audio_buffer.append", audio}));
    }
  }

  disableMic() {
    if (!this.mic) return;
    if (this.conn && this.conn.transport === "webrtc") this.conn.setMicrophone(null);
    this.mic.close();
    this.mic = null;
  }

  send(event) { if (this.connected && this.o.transport !== "stream") this.conn.send(event); }

  set(options) {
    Object.assign(this.o, options);
    if (this.mic) {
      const ptt = this.o.mode === "ptt";
      if (this.conn && this.conn.transport === "webrtc") this.mic.enabled = !ptt; else this.mic.sending = !ptt;
    }
    this.send(this.sessionUpdate());
  }

  sendText(text) {
    if (this.response && !this.response.done) this.interrupt();
    this.send({type: "conversation.item.create", item: {type: "message", role: "user",
      content: [{type: "input_text", text}]}});
    this.send({type: "response.create"});
    this.awaiting = true;
    this.refresh();
  }

  /** Push-to-talk: speaking starts on press; release commits the turn and asks for a reply. */
  pressTalk() {
    if (!this.mic || this.talking) return;
    this.interrupt();
    this.talking = true;
    this.send({type: "input_audio_buffer.clear"});
    if (this.conn.transport === "webrtc") this.mic.enabled = true; else this.mic.sending = true;
    this.refresh();
  }

  releaseTalk() {
    if (!this.talking) return;
    setTimeout(() => {  // the last words are still on their way
      this.talking = false;
      if (this.conn.transport === "webrtc") this.mic.enabled = false; else this.mic.sending = false;
      this.pttCommit = true;
      this.send({type: "input_audio_buffer.commit"});
      this.refresh();
    }, 250);
  }

  /** Stop the reply now: local playback at once, and the server's reply. */
  interrupt() {
    const r = this.response;
    const active = r && !r.done;
    if (this.conn && this.conn.transport === "webrtc") {
      this.audio.mute();
      if (active) this.send({type: "response.cancel"});
      this.send({type: "output_audio_buffer.clear"});
    } else if (this.conn) {
      if (active) this.send({type: "response.cancel"});
      this.stopPlayback();
    }
    if (r) r.stopped = true;
    if (this.o.avatar) this.o.avatar.clear();
    this.refresh();
  }

  dropVideo() {
    if (this.video && this.o.onVideo) this.o.onVideo(null);
    this.video = null;
  }

  /** WebSocket path: drop the queued reply audio now, and tell the server how much of it was heard. */
  stopPlayback() {
    const r = this.response;
    const played = r ? this.audio.playedMs(r.id) : null;
    this.audio.flush();
    if (r && r.itemId && r.audio && played > 0 && !r.truncated) {
      r.truncated = true;
      this.send({type: "conversation.item.truncate", item_id: r.itemId, content_index: 0, audio_end_ms: Math.floor(played)});
    }
  }

  /** The server cut the reply (e.g. a stream host's skip or the streamer talking): stop what is queued here too. */
  cutByServer() {
    if (this.conn.transport === "websocket") this.stopPlayback();
    this.response.stopped = true;
    if (this.o.avatar) this.o.avatar.clear();
  }

  onTrack(track, stream) {
    if (track.kind === "audio") this.audio.attachStream(stream);
    else if (track.kind === "video") this.video = stream;  // shown once the call is up
  }

  onEvent(e) {
    const r = this.response;
    switch (e.type) {
      case "input_audio_buffer.speech_started":
        this.userSpeaking = true;
        if (this.conn.transport === "websocket") {  // barge-in: the server cancels the reply; stop ours too
          this.stopPlayback();
          if (r && !r.done) r.stopped = true;  // its audio still on the way is not played
        }
        if (this.o.avatar) this.o.avatar.clear();
        break;
      case "input_audio_buffer.speech_stopped":
        this.userSpeaking = false;
        this.awaiting = true;
        break;
      case "input_audio_buffer.committed":
        if (this.pttCommit) { this.pttCommit = false; this.awaiting = true; this.send({type: "response.create"}); }
        break;
      case "conversation.item.input_audio_transcription.completed":
        if (!e.transcript || !e.transcript.trim()) this.awaiting = false;
        break;
      case "response.created":
        this.response = {id: e.response.id, done: false, started: false, audio: (e.response.output_modalities || []).includes("audio")};
        this.awaiting = false;
        this.audio.unmute();
        if (this.o.avatar) this.o.avatar.newReply();
        break;
      case "response.output_item.added":
        if (r && e.response_id === r.id) r.itemId = e.item.id;
        break;
      case "response.output_audio.delta":
        if (r && e.response_id === r.id && !r.stopped) { r.started = true; this.audio.enqueue(e.delta, e.response_id); }
        break;
      case "response.output_audio_transcript.delta":
      case "response.output_text.delta":
        if (r && e.response_id === r.id) r.started = true;
        break;
      case "livehost.emotion":
        if (this.o.avatar) this.o.avatar.setEmotion(e);
        break;
      case "livehost.visemes":
        if (this.o.avatar) this.o.avatar.pushVisemes(e);
        break;
      case "response.done":
        if (r && e.response.id === r.id) {
          r.done = true;
          r.doneAt = performance.now();
          if (e.response.status === "cancelled" && !r.stopped) this.cutByServer();
        }
        this.awaiting = false;
        break;
      case "output_audio_buffer.cleared":  // the reply was all sent, then the server dropped its unplayed tail
        if (r && !r.stopped) this.cutByServer();
        break;
      case "error":
        if (e.error && e.error.code === "input_audio_buffer_commit_empty") this.pttCommit = false;
        break;
      case "connection.closed":
        if (!this.closing) this.emit("lost", e.reason);
        this.conn = null;
        this.dropVideo();
        this.disableMic();
        this.audio.flush();
        break;
    }
    const {delta, audio, ...rest} = e;  // keep the debug log small: no audio payloads
    this.debug.events.push(e.type === "response.output_audio.delta" ? rest : e);
    if (this.debug.events.length > 3000) this.debug.events.splice(0, 1000);
    this.emit(e.type, e);
    this.emit("*", e);
    this.refresh();
  }

  onLevel(rms, t) {
    this.debug.levels.push([Math.round(t), rms]);
    if (this.debug.levels.length > 6000) this.debug.levels.splice(0, 2000);
    const r = this.response;
    if (r && !r.done && r.onset == null && rms > 0.005) r.onset = t;
    this.refresh();
  }

  /** Ms of the current reply's audio heard so far: the clock `livehost.visemes` and emotions run on. */
  clock() {
    const r = this.response;
    if (!r) return null;
    if (this.conn && this.conn.transport === "websocket") return this.audio.playedMs(r.id);
    return r.onset != null ? performance.now() - r.onset : null;
  }

  playing() {
    if (!this.conn) return false;
    const r = this.response;
    const replying = r && r.started && !r.done && !r.stopped;  // a short gap between sentences is still speaking
    if (this.conn.transport === "websocket" && this.o.output === "audio") return this.audio.playing || !!replying;
    if (!r || !r.started || r.stopped) return false;
    return !r.done || (r.audio && (performance.now() < r.doneAt + 600 || this.audio.level > 0.01));
  }

  setState(state) {
    if (state === this.state) return;
    this.state = this.debug.state = state;
    const avatarMode = {hearing: "listening", thinking: "thinking", speaking: "speaking"}[state] || "idle";
    if (this.o.avatar) this.o.avatar.setMode(avatarMode);
    this.emit("state", state);
  }

  refresh() {
    if (!this.conn) return this.setState(this.state === "connecting" ? "connecting" : "idle");
    if (this.userSpeaking || this.talking) return this.setState("hearing");
    if (this.playing()) return this.setState("speaking");
    if (this.awaiting || (this.response && !this.response.done && !this.response.stopped)) return this.setState("thinking");
    this.setState("listening");
  }

  close() {
    this.closing = true;
    if (this.conn) this.conn.close();
    this.closing = false;
    this.conn = null;
    this.dropVideo();
    this.disableMic();
    this.audio.flush();
    this.userSpeaking = this.awaiting = this.talking = false;
    this.response = null;
    this.setState("idle");
  }
}
