// Failures in plain words, for people: what happened and what to do about it.
import {AuthError, NetworkError} from "./realtime.js";

/** A failure in plain words; `kind` is "auth", "mic", "network" or "other". */
export class LiveError extends Error {
  constructor(kind, message) { super(message); this.kind = kind; }
}

export function explain(err, origin) {
  if (err instanceof LiveError) return err;
  const host = new URL(origin).host;
  if (err instanceof AuthError) {
    return new LiveError("auth", "Not authorised: the server refused this page a client token, so no " +
      `conversation can start. Ask the site owner to check livehost's API keys and token settings. ` +
      `(The server said: ${err.message})`);
  }
  if (err && (err.name === "NotAllowedError" || err.name === "SecurityError")) {
    return new LiveError("mic", "Microphone access is blocked. Allow the microphone for this site (the icon " +
      "in the address bar), then try again, or continue with text only.");
  }
  if (err && (err.name === "NotFoundError" || err.name === "NotReadableError" || err.name === "OverconstrainedError")) {
    return new LiveError("mic", "No working microphone was found. Plug one in and try again, or continue with text only.");
  }
  if (err instanceof NetworkError) {
    console.warn("livehost:", err.message);
    return new LiveError("network", `Can't reach the livehost server at ${host}. Check that it is running ` +
      "and that you are online, then try again.");
  }
  return new LiveError("other", `Something went wrong while connecting: ${err && err.message ? err.message : err}`);
}
