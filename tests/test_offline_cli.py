"""The studio turns offline mode on by itself: in fresh interpreters whose environment says nothing
about Hugging Face, full image, text and morph jobs open no socket, from the command line and
through the window's engine process alike.

The guard is a sitecustomize module on PYTHONPATH, so it is installed in every Python process the
test starts, the spawned engine process included; each blocked attempt is appended to a file."""

import json
import os
import subprocess
import sys

GUARD = r"""
import os, socket
def refuse(*args, **kwargs):
    with open(os.environ["STUDIO_TEST_SOCKET_LOG"], "a") as log:
        log.write(repr(args[:2]) + "\n")
    raise OSError("network is off in this test")
socket.socket.connect = refuse
socket.socket.connect_ex = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse
"""

CLI = r"""
import json, sys
from studio.cli import main
out = sys.argv[1]
codes = [
    main(["generate", "a red cat", "--model", "tiny-sd", "--steps", "2", "--seed", "1", "--out", out + "/cat.png"]),
    main(["write", "The quiet river", "--model", "tiny-gpt2", "--max-tokens", "5", "--seed", "1"]),
    main(["morph", "--model", "tiny-sd", "--prompts", "a red cat|a blue cat", "--steps", "2", "--frames", "3",
          "--seed", "1", "--out", out + "/travel.gif"]),
]
print("RESULT " + json.dumps(codes))
"""

ENGINE = r"""
import json, threading
from studio.core.events import Failed, Finished, Cancelled
from studio.core.jobs import ImageJob, MorphJob, TextJob
from studio.engine.host.supervisor import EngineProcess, RunnerRecipe
from studio.engine.queue import JobQueue
from studio.models.registry import ModelRegistry

def main():
    queue, ends, done = JobQueue(), [], threading.Event()
    def emit(event):
        if isinstance(event, (Finished, Failed, Cancelled)):
            ends.append(type(event).__name__ if not isinstance(event, Failed) else event.message)
            if len(ends) == 3:
                done.set()
    host = EngineProcess(RunnerRecipe(ModelRegistry(), 1 << 32, previews=False))
    thread = threading.Thread(target=host.serve, args=(queue, emit))
    thread.start()
    for spec in (ImageJob(model="tiny-sd", prompt="a red cat", steps=2, width=64, height=64),
                 TextJob(model="tiny-gpt2", prompt="The quiet river", max_new_tokens=5),
                 MorphJob(model="tiny-sd", prompts=("a red cat", "a blue cat"), steps=2, frames=3, width=64, height=64)):
        queue.put(queue.make_job(spec))
    done.wait(300)
    queue.close()
    thread.join()
    print("RESULT " + json.dumps(ends))

if __name__ == "__main__":
    main()
"""


def run_guarded(tmp_path, code: str, *args: str) -> tuple[object, list[str]]:
    """Run `code` in a fresh interpreter with the socket guard; its RESULT and the blocked attempts."""
    (tmp_path / "guard").mkdir(exist_ok=True)
    (tmp_path / "guard" / "sitecustomize.py").write_text(GUARD)
    script = tmp_path / "script.py"
    script.write_text(code)
    attempts = tmp_path / "sockets.log"
    attempts.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path / "guard"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["STUDIO_TEST_SOCKET_LOG"] = str(attempts)
    done = subprocess.run([sys.executable, str(script), *args], env=env, capture_output=True, text=True, timeout=400)
    line = next((text for text in done.stdout.splitlines() if text.startswith("RESULT ")), None)
    assert line, done.stderr[-2000:]
    return json.loads(line[len("RESULT ") :]), attempts.read_text().splitlines()


def build_models(sandbox_dirs) -> None:
    from studio.bench.tiny_models import build_tiny_diffusers, build_tiny_gpt2

    build_tiny_diffusers(sandbox_dirs / "models" / "tiny-sd")
    build_tiny_gpt2(sandbox_dirs / "models" / "tiny-gpt2")


def test_image_text_and_morph_from_the_command_line_open_no_socket(tmp_path, sandbox_dirs):
    build_models(sandbox_dirs)
    codes, attempts = run_guarded(tmp_path, CLI, str(tmp_path))
    assert codes == [0, 0, 0]
    assert attempts == []
    assert (tmp_path / "cat.png").stat().st_size > 0 and (tmp_path / "travel.gif").stat().st_size > 0


def test_image_text_and_morph_in_the_engine_process_open_no_socket(tmp_path, sandbox_dirs):
    build_models(sandbox_dirs)
    ends, attempts = run_guarded(tmp_path, ENGINE)
    assert ends == ["Finished", "Finished", "Finished"]
    assert attempts == []


CHILD_CONNECTS = r"""
import json, subprocess, sys
code = "import socket\ntry:\n    socket.create_connection(('192.0.2.1', 80), timeout=0.1)\nexcept OSError:\n    pass"
print("RESULT " + json.dumps(subprocess.run([sys.executable, "-c", code]).returncode))
"""


def test_the_guard_catches_an_attempt_in_a_child_process(tmp_path):
    code, attempts = run_guarded(tmp_path, CHILD_CONNECTS)
    assert code == 0 and attempts == ["(('192.0.2.1', 80),)"]
