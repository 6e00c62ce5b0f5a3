from studio.app import main

# The guard matters: the engine process is started with multiprocessing's spawn, which imports
# this file again in the child; without it the child would open a second window.
if __name__ == "__main__":
    raise SystemExit(main())
