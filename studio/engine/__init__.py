"""The engine: what runs jobs, with no Qt anywhere in it.

runner.py runs one job on a backend and reports it as core.events (errors.py says what a failure
means), queue.py holds the waiting jobs in their two lanes, cache.py keeps loaded models resident.
host/ runs the runner in a supervised engine process and speaks to it in typed messages
(protocol.py); backends/ are the loaded models, one per runtime x family; morph/ holds the morph
algorithms; export/ turns torch models into checked ONNX exports. The window hosts either a Runner
or an EngineProcess on a QThread (studio/state/engine_thread.py); the CLI runs a Runner directly.

Nothing here imports torch at module level; backends are imported on first use."""
