"""Internals of `lstmjax.train`: the pure step, the loop, the JSON-lines log."""
