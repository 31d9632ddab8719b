// AudioWorklet: microphone samples at the context's rate -> mono PCM16 at 24 kHz, posted in 100 ms chunks.
// The main thread turns them into `input_audio_buffer.append` events (the WebSocket path).
const RATE = 24000;
const CHUNK = RATE / 10;

class Pcm16Capture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.step = sampleRate / RATE;  // input samples per output sample
    this.t = 0;  // position of the next output sample, in input samples from the start of this block
    this.prev = 0;  // the last input sample of the previous block (position -1)
    this.out = new Int16Array(CHUNK);
    this.n = 0;
  }

  process(inputs) {
    const x = inputs[0] && inputs[0][0];
    if (!x || !x.length) return true;
    while (this.t < x.length - 1) {  // linear interpolation between the two neighbouring input samples
      const i = Math.floor(this.t);
      const a = i < 0 ? this.prev : x[i];
      const v = a + (x[i + 1] - a) * (this.t - i);
      this.out[this.n++] = Math.max(-32768, Math.min(32767, Math.round(v * 32767)));
      if (this.n === CHUNK) {
        this.port.postMessage(this.out.buffer, [this.out.buffer]);
        this.out = new Int16Array(CHUNK);
        this.n = 0;
      }
      this.t += this.step;
    }
    this.t -= x.length;
    this.prev = x[x.length - 1];
    return true;
  }
}

registerProcessor("pcm16-capture", Pcm16Capture);
