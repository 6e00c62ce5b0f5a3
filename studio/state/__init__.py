"""Observable application state for the UI: the jobs list, the current error, remembered settings.

QtCore only, never QtGui or QtWidgets, so the state can be driven and tested without a window
(pictures travel as numpy arrays; studio/ui/images.py makes QImages of them)."""
