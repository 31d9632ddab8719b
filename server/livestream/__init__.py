"""Livestream host mode: chat adapters (Twitch IRC, Bilibili danmaku, generic ingest) and the host chat queue."""
