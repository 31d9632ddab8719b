"""Prometheus metrics: per-stage latency histograms and session counts (served at /metrics)."""
from prometheus_client import Counter, Gauge, Histogram

_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.65, 0.8, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)

ENDPOINTING = Histogram("livehost_endpointing_seconds", "last voiced input audio to end-of-turn decision", buckets=_BUCKETS)
ASR_FINAL = Histogram("livehost_asr_final_seconds", "end-of-turn decision to final transcript (0 when speculation won)", buckets=_BUCKETS)
LLM_FIRST_TOKEN = Histogram("livehost_llm_first_token_seconds", "reply start to first LLM token", buckets=_BUCKETS)
TTS_FIRST_AUDIO = Histogram("livehost_tts_first_audio_seconds", "reply start to first audio sent", buckets=_BUCKETS)
TTS_CHUNK = Histogram("livehost_tts_chunk_seconds", "synthesis time of one speakable chunk", buckets=_BUCKETS)
SPEECH_END_TO_AUDIO = Histogram("livehost_speech_end_to_first_audio_seconds",
                                "end of user speech to first reply audio sent (server side)", buckets=_BUCKETS)
BARGE_IN = Histogram("livehost_barge_in_seconds", "cancel requested to reply fully stopped", buckets=_BUCKETS)
SESSIONS_ACTIVE = Gauge("livehost_sessions_active", "open sessions", ["transport"])
SESSIONS_TOTAL = Counter("livehost_sessions_total", "sessions opened", ["transport"])
ERRORS = Counter("livehost_client_errors_total", "error events sent to clients", ["code"])
REPLIES = Counter("livehost_replies_total", "replies by final status", ["status"])

# livestream host mode
STREAM_QUEUE_DEPTH = Gauge("livehost_stream_queue_depth", "chat events waiting to be answered")
STREAM_CHAT = Counter("livehost_stream_chat_events_total", "chat events by what became of them: queued, collapsed "
                      "(folded into an identical pending one) or the reason they were dropped", ["outcome"])
STREAM_SPOKEN = Counter("livehost_stream_spoken_total", "host turns by kind (chat, idle, line) and final status",
                        ["kind", "status"])
STREAM_CHAT_TO_SPEECH = Histogram("livehost_stream_chat_to_speech_seconds", "chat event received to the first audio "
                                  "of its answer", buckets=_BUCKETS + (20.0, 30.0, 60.0, 120.0))

# limits (a client must not be able to take the server from others)
SLOW_CLIENTS = Counter("livehost_slow_clients_total", "clients disconnected because they did not read their events "
                       "(server.max_outbox_bytes)", ["transport"])
SESSIONS_REFUSED = Counter("livehost_sessions_refused_total", "sessions refused, by reason (session_limit_reached, "
                           "rate_limit_exceeded)", ["reason"])
REPLIES_REFUSED = Counter("livehost_replies_refused_total", "response.create refused, by reason (server_busy, "
                          "rate_limit_exceeded)", ["reason"])
RATE_LIMITED = Counter("livehost_rate_limited_total", "requests over a per-client rate limit", ["what"])
REPLIES_ACTIVE = Gauge("livehost_replies_active", "replies in progress (server.max_replies at most)")
