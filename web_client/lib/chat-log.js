// The conversation transcript: user turns (partial while they speak, final when transcribed), the reply text
// as it is spoken, knowledge sources under answers, notes. The list is a `role="log"` live region; a bubble
// that is still changing is `aria-busy` so screen readers read it once it is final.
export class ChatLog {
  constructor(list, {assistantName = "Assistant", onChange = () => {}, labels = {}} = {}) {
    this.list = list;
    this.assistantName = assistantName;
    this.labels = {you: "You", source: "Source", sources: "Sources", interrupted: "interrupted", ...labels};
    this.onChange = onChange;
    this.users = new Map();  // item id -> bubble
    this.replies = new Map();  // response id -> bubble
  }

  bubble(role, who) {
    const li = document.createElement("li");
    li.className = `msg ${role}`;
    const name = document.createElement("span");
    name.className = "who";
    name.textContent = who;
    const text = document.createElement("p");
    text.className = "text";
    li.append(name, text);
    this.list.append(li);
    return li;
  }

  changed() {
    this.list.scrollTop = this.list.scrollHeight;
    this.onChange();
  }

  /** A spoken user turn: partial words (`conversation.item.input_audio_transcription.delta`). */
  userPartial(itemId, delta) {
    let li = this.users.get(itemId);
    if (!li) {
      li = this.bubble("user partial", this.labels.you);
      li.setAttribute("aria-busy", "true");
      this.users.set(itemId, li);
    }
    if (delta) li.querySelector(".text").textContent += delta;
    this.changed();
  }

  /** The final transcript of a spoken turn; an empty one removes the bubble. */
  userFinal(itemId, transcript) {
    const li = this.users.get(itemId) || this.bubble("user", this.labels.you);
    this.users.set(itemId, li);
    const text = (transcript || "").trim();
    if (!text) {
      li.remove();
      this.users.delete(itemId);
    } else {
      li.querySelector(".text").textContent = text;
      li.classList.remove("partial");
      li.removeAttribute("aria-busy");
    }
    this.changed();
  }

  userText(text) {
    this.bubble("user", this.labels.you).querySelector(".text").textContent = text;
    this.changed();
  }

  reply(responseId) {
    let li = this.replies.get(responseId);
    if (!li) {
      li = this.bubble("assistant", this.assistantName);
      li.setAttribute("aria-busy", "true");
      this.replies.set(responseId, li);
    }
    return li;
  }

  /** Reply text as it is spoken (`response.output_audio_transcript.delta` / `response.output_text.delta`). */
  replyDelta(responseId, delta) {
    this.reply(responseId).querySelector(".text").textContent += delta;
    this.changed();
  }

  /** `livehost.knowledge`: the documents that ground this answer, by name. */
  replySources(responseId, sources) {
    const names = [...new Set((sources || []).map((s) => String(s.source || s.id).split("/").pop()))];
    if (!names.length) return;
    const li = this.reply(responseId);
    let p = li.querySelector(".sources");
    if (!p) {
      p = document.createElement("p");
      p.className = "sources";
      li.append(p);
    }
    p.textContent = `${names.length > 1 ? this.labels.sources : this.labels.source}: ${names.join(", ")}`;
    this.changed();
  }

  /** `response.done`: an interrupted reply keeps the words that were heard. */
  replyDone(response) {
    const li = this.replies.get(response.id);
    if (!li) return;
    li.removeAttribute("aria-busy");
    const text = li.querySelector(".text");
    const heard = (response.output || []).flatMap((i) => i.content || []).map((c) => c.transcript ?? c.text).find((t) => t != null);
    if (response.status === "cancelled") {
      if (heard != null) text.textContent = heard;
      li.classList.add("interrupted");
      const tag = document.createElement("span");
      tag.className = "tag";
      tag.textContent = this.labels.interrupted;
      li.querySelector(".who").append(tag);
    }
    if (!text.textContent.trim() && !li.querySelector(".sources")) li.remove();
    this.changed();
  }

  /** A message from the assistant that did not come from the server (a greeting). */
  say(text) {
    const li = this.bubble("assistant", this.assistantName);
    li.querySelector(".text").textContent = text;
    this.changed();
  }

  /** The conversation so far as [{role, text}] (for a handoff to a person). */
  transcript() {
    return [...this.list.querySelectorAll(".msg:not(.partial)")].map((li) => ({
      role: li.classList.contains("user") ? "user" : "assistant", text: li.querySelector(".text").textContent}));
  }

  note(message) {
    const li = document.createElement("li");
    li.className = "note";
    li.textContent = message;
    this.list.append(li);
    this.changed();
  }

  clear() {
    this.list.replaceChildren();
    this.users.clear();
    this.replies.clear();
  }
}
