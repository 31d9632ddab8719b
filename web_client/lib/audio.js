// Audio in the browser: the microphone as PCM16 24 kHz chunks (WebSocket path), reply playback from
// `response.output_audio.delta` PCM16 24 kHz as a queue of scheduled buffers that can be flushed at once
// (barge-in), the WebRTC voice track, and an output level meter (what the page really plays).
const RATE = 24000;
const WORKLET = new URL("./pcm-worklet.js", import.meta.url);

export function base64FromBytes(buffer) {
  const bytes = new Uint8Array(buffer);
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

function floatsFromBase64(b64) {
  const raw = atob(b64);
  const n = raw.length >> 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let v = raw.charCodeAt(2 * i) | (raw.charCodeAt(2 * i + 1) << 8);
    if (v >= 0x8000) v -= 0x10000;
    out[i] = v / 32768;
  }
  return out;
}

/** One AudioContext for the page: everything heard passes gain -> analyser -> speakers. */
export class AudioOut {
  constructor() {
    this.ctx = new AudioContext({latencyHint: "interactive"});
    this.gain = this.ctx.createGain();
    this.analyser = this.ctx.createAnalyser();
    this.analyser.fftSize = 1024;
    this.gain.connect(this.analyser).connect(this.ctx.destination);
    this.sources = [];  // scheduled buffers: {node, start, end, responseId, offsetMs}
    this.nextTime = 0;
    this.responseMs = new Map();  // response id -> ms of its audio scheduled so far
    this.buf = new Float32Array(this.analyser.fftSize);
    this.level = 0;
    this.meters = [];
  }

  async resume() {
    if (this.ctx.state !== "running") await this.ctx.resume().catch(() => {});
  }

  /** Output RMS (0..1), sampled every 50 ms; `onLevel(rms, t)` listeners (tests, the avatar) get each one. */
  startMeter(onLevel) {
    if (onLevel) this.meters.push(onLevel);
    if (this.meterTimer) return;
    this.meterTimer = setInterval(() => {
      this.analyser.getFloatTimeDomainData(this.buf);
      let sum = 0;
      for (const x of this.buf) sum += x * x;
      this.level = Math.sqrt(sum / this.buf.length);
      for (const fn of this.meters) fn(this.level, performance.now());
    }, 50);
  }

  /** WebRTC: play the remote voice through the meter. Chromium only pulls a remote track that a media element
   * plays, so a muted <audio> keeps it flowing while Web Audio does the playing. */
  attachStream(stream) {
    if (!this.sink) {
      this.sink = new Audio();
      this.sink.muted = true;
    }
    this.sink.srcObject = stream;
    this.sink.play().catch(() => {});
    if (this.streamSource) this.streamSource.disconnect();
    this.streamSource = this.ctx.createMediaStreamSource(stream);
    this.streamSource.connect(this.gain);
  }

  /** Silence everything at once (interrupt), until unmute(). */
  mute() { this.gain.gain.setValueAtTime(0, this.ctx.currentTime); }
  unmute() { this.gain.gain.setValueAtTime(1, this.ctx.currentTime); }

  /** WebSocket: queue one `response.output_audio.delta` right after the audio already scheduled. */
  enqueue(b64, responseId) {
    const samples = floatsFromBase64(b64);
    if (!samples.length) return;
    const buffer = this.ctx.createBuffer(1, samples.length, RATE);
    buffer.copyToChannel(samples, 0);
    const node = this.ctx.createBufferSource();
    node.buffer = buffer;
    node.connect(this.gain);
    const now = this.ctx.currentTime;
    const start = this.nextTime > now ? this.nextTime : now + 0.06;  // a little slack against network jitter
    const offsetMs = this.responseMs.get(responseId) || 0;
    this.responseMs.set(responseId, offsetMs + buffer.duration * 1000);
    const entry = {node, start, end: start + buffer.duration, responseId, offsetMs};
    node.onended = () => { this.sources = this.sources.filter((s) => s !== entry); };
    node.start(start);
    this.sources.push(entry);
    this.nextTime = entry.end;
  }

  /** Barge-in: stop every scheduled buffer now. Returns how many ms of each response were played. */
  flush() {
    const played = this.playedMs();
    for (const s of this.sources) {
      try { s.node.stop(); } catch { /* already stopped */ }
      s.node.disconnect();
    }
    this.sources = [];
    this.nextTime = 0;
    return played;
  }

  get playing() {
    return this.sources.some((s) => s.end > this.ctx.currentTime);
  }

  /** Ms of a response's audio played so far (the clock its visemes run on); the latest response by default. */
  playedMs(responseId) {
    const now = this.ctx.currentTime;
    let best = null;
    for (const s of this.sources) {
      if (responseId && s.responseId !== responseId) continue;
      if (s.start <= now) best = s.offsetMs + Math.min(now, s.end) * 1000 - s.start * 1000;
    }
    return best;
  }

  close() {
    this.flush();
    clearInterval(this.meterTimer);
    if (this.sink) this.sink.srcObject = null;
    this.ctx.close().catch(() => {});
  }
}

/** The microphone: a MediaStream (for WebRTC) and, on demand, PCM16 24 kHz chunks (for the WebSocket). */
export class Microphone {
  static async open() {
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: {echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1},
    });
    return new Microphone(stream);
  }

  constructor(stream) {
    this.stream = stream;
    this.sending = true;
  }

  /** Enable or disable the track (push-to-talk on WebRTC sends silence while disabled). */
  set enabled(on) {
    for (const t of this.stream.getAudioTracks()) t.enabled = on;
  }

  /** Start posting base64 PCM16 chunks to `onChunk` while `this.sending` is true. */
  async capture(ctx, onChunk) {
    await ctx.audioWorklet.addModule(WORKLET);
    this.source = ctx.createMediaStreamSource(this.stream);
    this.node = new AudioWorkletNode(ctx, "pcm16-capture", {numberOfInputs: 1, numberOfOutputs: 1});
    this.node.port.onmessage = (m) => { if (this.sending) onChunk(base64FromBytes(m.data)); };
    this.source.connect(this.node).connect(ctx.destination);  // its output is silence; the edge keeps it running
  }

  close() {
    if (this.source) this.source.disconnect();
    if (this.node) { this.node.port.onmessage = null; this.node.disconnect(); }
    for (const t of this.stream.getTracks()) t.stop();
  }
}
