"""Observable application state for the UI: the jobs list, the current error, remembered settings.

QtCore (and QImage) only, never QtWidgets, so the state can be driven and tested without widgets."""
