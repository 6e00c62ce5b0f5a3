from studio.app import main

# The guard keeps an import of this file (a tool, a test) from opening a window. The engine process
# never imports it: it starts as a fresh `python -P -m studio.engine.host.engine_main`, in the
# studio's own folder (studio/core/child_python.py), not through multiprocessing.
if __name__ == "__main__":
    raise SystemExit(main())
