"""The engine process and the window's side of it. supervisor.py (the window's EngineProcess)
starts `python -m studio.engine.host.engine_main`, passes it jobs and relays its events; a native
crash there costs the jobs it held, never the window. protocol.py holds every message between the
two, as frozen dataclasses."""
