"""The studio turns offline mode on by itself: in a fresh interpreter whose environment says nothing
about Hugging Face, generating an image and text through `studio` opens no socket."""

import json
import os
import subprocess
import sys

GUARD = r"""
import json, socket, sys
attempts = []
def refuse(*args, **kwargs):
    attempts.append(repr(args[:2]))
    raise OSError("network is off in this test")
socket.socket.connect = refuse
socket.socket.connect_ex = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse
from studio.cli import main
codes = [
    main(["generate", "a red cat", "--model", "tiny-sd", "--steps", "2", "--seed", "1", "--out", sys.argv[1]]),
    main(["write", "The quiet river", "--model", "tiny-gpt2", "--max-tokens", "5", "--seed", "1"]),
]
print("RESULT " + json.dumps({"codes": codes, "attempts": attempts}))
"""


def test_generating_from_the_command_line_opens_no_socket(tmp_path, sandbox_dirs):
    from studio.bench.tiny_models import build_tiny_diffusers, build_tiny_gpt2

    models = sandbox_dirs / "models"
    build_tiny_diffusers(models / "tiny-sd")
    build_tiny_gpt2(models / "tiny-gpt2")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    out = tmp_path / "cat.png"
    done = subprocess.run([sys.executable, "-c", GUARD, str(out)], env=env, capture_output=True, text=True, timeout=300)
    line = next((l for l in done.stdout.splitlines() if l.startswith("RESULT ")), None)
    assert line, done.stderr[-2000:]
    result = json.loads(line[len("RESULT "):])
    assert result["codes"] == [0, 0], done.stderr[-2000:]
    assert result["attempts"] == []
    assert out.stat().st_size > 0
