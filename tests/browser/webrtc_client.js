// A minimal OpenAI-style WebRTC client for tests: offer -> POST /v1/realtime/calls -> answer; events on `oai-events`.
window.rtc = {events: [], levels: [], frames: [], state: "new"};

function watchVideo(stream) {
  // every 50 ms: how much the picture changed since the last look, and how loud the voice is right now
  const video = document.createElement("video");
  video.srcObject = stream; video.muted = true; video.playsInline = true; video.play();
  const canvas = document.createElement("canvas"); canvas.width = 128; canvas.height = 128;
  const g = canvas.getContext("2d", {willReadFrequently: true});
  let last = null;
  setInterval(() => {
    if (video.readyState < 2) return;
    g.drawImage(video, 0, 0, 128, 128);
    const px = g.getImageData(0, 0, 128, 128).data;
    let diff = 0;
    if (last) for (let i = 0; i < px.length; i += 4) diff += Math.abs(px[i] - last[i]) + Math.abs(px[i + 1] - last[i + 1]);
    last = px;
    const level = window.rtc.levels.length ? window.rtc.levels[window.rtc.levels.length - 1] : 0;
    window.rtc.frames.push({diff: diff / (128 * 128), level, w: video.videoWidth});
  }, 50);
}

async function makeOffer(withVideo) {
  const pc = new RTCPeerConnection();
  window.rtc.pc = pc;
  const dc = pc.createDataChannel("oai-events");
  dc.onmessage = (m) => window.rtc.events.push(JSON.parse(m.data));
  window.rtc.dc = dc;
  const mic = await navigator.mediaDevices.getUserMedia(
    {audio: {echoCancellation: false, noiseSuppression: false, autoGainControl: false}});
  mic.getTracks().forEach((t) => pc.addTrack(t, mic));
  if (withVideo) pc.addTransceiver("video", {direction: "recvonly"});
  pc.ontrack = (e) => {
    if (e.track.kind === "video") return watchVideo(new MediaStream([e.track]));
    if (e.track.kind !== "audio") return;
    const el = new Audio(); el.srcObject = e.streams[0] || new MediaStream([e.track]); el.muted = true; el.play();
    const ctx = new AudioContext();
    const analyser = ctx.createAnalyser();
    ctx.createMediaStreamSource(el.srcObject).connect(analyser);
    const buf = new Float32Array(analyser.fftSize);
    setInterval(() => {
      analyser.getFloatTimeDomainData(buf);
      window.rtc.levels.push(Math.sqrt(buf.reduce((s, x) => s + x * x, 0) / buf.length));
    }, 50);
  };
  pc.onconnectionstatechange = () => { window.rtc.state = pc.connectionState; };
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {
    if (pc.iceGatheringState === "complete") return resolve();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && resolve();
  });
  return pc.localDescription.sdp;
}

async function livehostCall(url, sessionUpdate, withVideo) {
  const sdp = await makeOffer(withVideo);
  if (sessionUpdate) window.rtc.dc.onopen = () => window.rtc.dc.send(JSON.stringify(sessionUpdate));
  const r = await fetch(url, {method: "POST", body: sdp, headers: {"Content-Type": "application/sdp"}});
  if (!r.ok) throw new Error(await r.text());
  await window.rtc.pc.setRemoteDescription({type: "answer", sdp: await r.text()});
}
