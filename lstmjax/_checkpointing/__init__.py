"""Internals of `lstmjax.checkpoint`: the writer lock, content checksums, optimizer identity."""
