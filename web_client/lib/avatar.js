// The client-side avatar: livehost's built-in sprite sets (web_client/avatars/<name>.png + .json, packed from
// livehost.avatar.assets) drawn on a canvas the way the server's SpriteAvatar draws them: idle motion, blinks,
// head tilt per mode, expressions from `livehost.emotion`, and the mouth from `livehost.visemes` tracks on the
// reply's audio clock. Without viseme events the mouth follows the loudness of what the page plays.
const OPENNESS = {sil: 0, PP: 0, FF: 0.12, TH: 0.22, DD: 0.28, kk: 0.32, CH: 0.25, SS: 0.12, nn: 0.22, RR: 0.3,
  aa: 1, E: 0.62, I: 0.42, O: 0.8, U: 0.38};
const FALLBACK = {PP: "sil", FF: "SS", SS: "I", I: "E", E: "aa", TH: "DD", DD: "E", nn: "DD", kk: "E", CH: "U",
  RR: "U", U: "O", O: "aa"};
const SIMILAR = {excited: "happy", joy: "happy", glad: "happy", shy: "happy", calm: "neutral", sadness: "sad",
  surprise: "surprised", scared: "surprised", afraid: "surprised", anger: "angry", mad: "angry",
  disgusted: "angry", curious: "thinking", confused: "thinking"};
const TILT = {idle: 0, listening: 4, thinking: -3, speaking: 0};
const BASE = new URL("../avatars/", import.meta.url);

export class Avatar {
  /** `clock()` gives ms of the current reply's audio played (or null); `level()` the output loudness 0..1. */
  constructor(canvas, {clock = () => null, level = () => 0} = {}) {
    this.canvas = canvas;
    this.g = canvas.getContext("2d");
    this.clock = clock;
    this.level = level;
    this.mode = "idle";
    this.pose = {from: 0, to: 0, at: 0};
    this.emotions = [[-Infinity, "neutral"]];
    this.tracks = [];
    this.env = 0;
    this.peak = 0.05;
    this.seed = Math.random() * 1000;
    this.last = {};
    this.mouths = {};  // mouth layer -> frames drawn while speaking (for tests and debugging)
    this.frames = 0;
    new ResizeObserver(() => this.resize()).observe(canvas);
    this.resize();
  }

  async load(name) {
    this.sprites = null;
    try {
      const meta = await (await fetch(new URL(`${name}.json`, BASE))).json();
      const img = new Image();
      img.src = new URL(`${name}.png`, BASE).href;
      await img.decode();
      this.sprites = {meta, img, layers: meta.layers};
    } catch {
      this.sprites = null;  // an avatar the page has no sprites for: the drawn face below
    }
    this.name = name;
  }

  resize() {
    const dpr = Math.min(window.devicePixelRatio || 1, 2);
    this.canvas.width = Math.max(1, Math.round(this.canvas.clientWidth * dpr));
    this.canvas.height = Math.max(1, Math.round(this.canvas.clientHeight * dpr));
  }

  start() {
    if (this.running) return;
    this.running = true;
    const tick = (t) => {
      if (!this.running) return;
      if (t - (this.lastDraw || 0) >= 30) {  // ~30 fps is plenty for a 2D face
        this.lastDraw = t;
        this.draw(t);
      }
      requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  }

  stop() { this.running = false; }

  setMode(mode) {
    if (mode === this.mode) return;
    const now = performance.now();
    this.pose = {from: this.tilt(now), to: TILT[mode] ?? 0, at: now};
    this.mode = mode;
  }

  /** A new reply: its viseme tracks and emotions start on a fresh audio clock. */
  newReply() {
    this.tracks = [];
    this.emotions = [[-Infinity, "neutral"]];
  }

  /** `livehost.emotion`: {emotion, expression, audio_start_ms}. */
  setEmotion(event) {
    const name = (event.expression || event.emotion || "neutral").toLowerCase();
    this.emotions.push([event.audio_start_ms ?? 0, name]);
    this.emotions.sort((a, b) => a[0] - b[0]);
  }

  /** `livehost.visemes`: {audio_start_ms, duration_ms, visemes: [[name, start_ms, end_ms, weight], ...]}. */
  pushVisemes(event) {
    this.tracks.push({start: event.audio_start_ms, end: event.audio_start_ms + event.duration_ms, visemes: event.visemes});
  }

  /** Barge-in: drop the mouth tracks and listen. */
  clear() {
    this.tracks = [];
    this.env = 0;
    this.setMode("listening");
  }

  tilt(now) {
    const f = Math.min(1, (now - this.pose.at) / 300);
    const e = f * f * (3 - 2 * f);
    return this.pose.from + (this.pose.to - this.pose.from) * e;
  }

  /** The mouth shape and how open it is, from the viseme tracks, else from the loudness. */
  mouth() {
    const t = this.clock();
    if (t != null) {
      for (let i = this.tracks.length - 1; i >= 0; i--) {
        const tr = this.tracks[i];
        if (t < tr.start || t > tr.end) continue;
        const v = tr.visemes.find(([, s, e]) => t >= s && t < e);
        if (!v) break;
        const [name, , , weight] = v;
        return {shape: name !== "sil" && weight >= 0.35 ? name : "sil", open: (OPENNESS[name] ?? 0.3) * weight};
      }
      if (this.tracks.length) return {shape: "sil", open: 0};
    }
    const rms = this.level();
    this.peak = Math.max(0.05, rms, this.peak * 0.995);
    const target = Math.min(1, Math.max(0, (rms - 0.01) / (this.peak - 0.01))) ** 0.7;
    this.env += (target - this.env) * (target > this.env ? 0.6 : 0.3);
    const e = this.mode === "speaking" || rms > 0.01 ? this.env : 0;
    const shape = e < 0.15 ? "sil" : e < 0.3 ? "nn" : e < 0.5 ? "E" : e < 0.75 ? "O" : "aa";
    return {shape, open: e};
  }

  expression() {
    const t = this.clock() ?? Infinity;
    let emotion = "neutral";
    for (const [at, name] of this.emotions) if (at <= t) emotion = name;
    const has = (e) => this.sprites && ["expr", "eyes_open", "mouth_sil"].some((k) => this.sprites.layers[`${k}_${e}`]);
    let e = has(emotion) ? emotion : has(SIMILAR[emotion]) ? SIMILAR[emotion] : "neutral";
    if (e === "neutral" && (this.mode === "listening" || this.mode === "thinking") && has(this.mode)) e = this.mode;
    return {emotion, e};
  }

  eyes(now) {
    const slot = Math.floor(now / 4000);
    const r = Math.abs(Math.sin((slot + 1) * 12.9898 + this.seed) * 43758.5453) % 1;
    const phase = now - (slot * 4000 + 300 + r * 2500);
    if (phase >= 0 && phase < 150) return phase < 40 || phase >= 110 ? "half" : "closed";
    return "open";
  }

  draw(now) {
    const {g, canvas} = this;
    g.setTransform(1, 0, 0, 1, 0, 0);
    g.clearRect(0, 0, canvas.width, canvas.height);
    const mouth = this.mouth();
    const {emotion, e} = this.expression();
    const s = now / 1000;
    const listening = this.mode === "idle" || this.mode === "listening";
    const motion = {
      sway: (listening ? 2.2 : 0.9) * Math.sin(2 * Math.PI * s / 5.3 + 0.7),
      breath: 1.6 * Math.sin(2 * Math.PI * s / 4.2),
      bob: 0.8 * Math.sin(2 * Math.PI * s / 3.1) + (this.mode === "listening" ? 2 : 0) + 1.5 * mouth.open,
    };
    const tilt = this.tilt(now) * Math.PI / 180;
    if (!this.name) return;  // nothing loaded yet
    if (this.sprites) this.drawSprites(mouth, e, motion, tilt, now);
    else this.drawFace(mouth, motion, tilt, now);
    this.frames++;
    this.last = {mode: this.mode, emotion, expression: e, mouth: mouth.shape, open: mouth.open};
    if (this.mode === "speaking") this.mouths[mouth.shape] = (this.mouths[mouth.shape] || 0) + 1;
  }

  drawSprites(mouth, e, m, tilt, now) {
    const {g, canvas} = this;
    const {meta, img, layers} = this.sprites;
    const [sw, sh] = meta.size;
    const k = Math.min(canvas.width / sw, canvas.height / sh);
    g.setTransform(k, 0, 0, k, (canvas.width - sw * k) / 2, canvas.height - sh * k);
    const u = sh / 256;  // motion is designed at 256 px
    const layer = (name) => {
      const box = layers[name];
      if (box) g.drawImage(img, box[0], box[1], box[2], box[3], box[4], box[5], box[2], box[3]);
    };
    const pick = (name) => (layers[`${name}_${e}`] ? `${name}_${e}` : name);
    const head = (draw) => {
      g.save();
      const [px, py] = meta.pivot;
      g.translate(px + m.sway * u, py + (m.breath + m.bob) * u);
      g.rotate(-tilt);
      g.translate(-px, -py);
      draw();
      g.restore();
    };
    head(() => layer("back"));
    g.save();
    g.translate(0, m.breath * u);
    layer("body");
    g.restore();
    let shape = mouth.shape;
    while (!layers[`mouth_${shape}`]) shape = FALLBACK[shape] || "sil";
    let eyes = this.eyes(now);
    if (eyes === "half" && !layers.eyes_half) eyes = "closed";
    head(() => {
      layer("base");
      layer(pick(`eyes_${eyes}`));
      layer(pick(`mouth_${shape}`));
      layer(`expr_${e}`);
    });
  }

  drawFace(mouth, m, tilt, now) {  // no sprites: a simple drawn face that still blinks and talks
    const {g, canvas} = this;
    const r = Math.min(canvas.width, canvas.height) * 0.34;
    g.translate(canvas.width / 2 + m.sway, canvas.height * 0.52 + m.breath + m.bob);
    g.rotate(-tilt);
    g.fillStyle = "#ffd9c2";
    g.beginPath(); g.arc(0, 0, r, 0, 2 * Math.PI); g.fill();
    g.fillStyle = "#2b2440";
    const blink = this.eyes(now) !== "open";
    for (const x of [-0.38, 0.38]) {
      g.beginPath();
      g.ellipse(x * r, -0.15 * r, 0.09 * r, blink ? 0.015 * r : 0.12 * r, 0, 0, 2 * Math.PI);
      g.fill();
    }
    g.fillStyle = "#8e2f47";
    g.beginPath();
    g.ellipse(0, 0.38 * r, 0.22 * r, Math.max(0.02, 0.2 * mouth.open) * r, 0, 0, 2 * Math.PI);
    g.fill();
  }
}
