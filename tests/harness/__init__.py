"""Helpers for the end-to-end tests: mock upstreams, SSE builders, tokens, Envoy launcher."""
