"""Pure data shared by every layer: job specs, events, results, errors, settings.

Only the standard library and numpy may be imported here (a test enforces it)."""
