"""ghostrt ui: the local web app and the live stream server (above the public API; the runtime never imports it)."""
