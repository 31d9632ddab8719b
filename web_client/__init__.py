"""The browser side (pages, scripts, avatars). Nothing here is Python: this file only makes the folder a package, so
that an installed livehost ships the pages as package data and `livehost serve` can find them."""
