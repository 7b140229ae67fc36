"""Route handlers, one module per page."""
