"""Runtime side: executors and pipeline stages. Never imports torch (a test enforces it)."""
