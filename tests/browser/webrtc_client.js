// A minimal OpenAI-style WebRTC client for tests: offer -> POST /v1/realtime/calls -> answer; events on `oai-events`.
window.rtc = {events: [], levels: [], state: "new"};

async function makeOffer() {
  const pc = new RTCPeerConnection();
  window.rtc.pc = pc;
  const dc = pc.createDataChannel("oai-events");
  dc.onmessage = (m) => window.rtc.events.push(JSON.parse(m.data));
  window.rtc.dc = dc;
  const mic = await navigator.mediaDevices.getUserMedia(
    {audio: {echoCancellation: false, noiseSuppression: false, autoGainControl: false}});
  mic.getTracks().forEach((t) => pc.addTrack(t, mic));
  pc.ontrack = (e) => {
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

async function livehostCall(url, sessionUpdate) {
  const sdp = await makeOffer();
  if (sessionUpdate) window.rtc.dc.onopen = () => window.rtc.dc.send(JSON.stringify(sessionUpdate));
  const r = await fetch(url, {method: "POST", body: sdp, headers: {"Content-Type": "application/sdp"}});
  if (!r.ok) throw new Error(await r.text());
  await window.rtc.pc.setRemoteDescription({type: "answer", sdp: await r.text()});
}
