"""The HTTP layer's helpers: response schemas and request guards. Translation only."""
