"""Model files on disk: where they live, what format they are, how to load them safely.

No PySide6 here, and no torch at import time (loaders import it inside functions)."""
