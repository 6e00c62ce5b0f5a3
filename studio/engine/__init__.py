"""The inference engine: a pure-Python runner and queue, hosted by one QThread in the window.

Nothing here imports torch at module level; backends are imported on first use."""
