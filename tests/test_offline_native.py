"""No network from native code either: the Python socket guard in test_offline_cli.py cannot see a
native library's own threads, and ONNX Runtime's Linux build carries a telemetry client that looks
up its collector's host once the runtime has lived a few seconds. Here the whole process tree runs
under strace, which sees every socket any thread opens, and must open none but local ones.

Where it can, the run is also put in a network namespace of its own with no interface up, so a
regression shows in the trace without any packet leaving the machine."""

import os
import re
import shutil
import subprocess
import sys

import pytest

# The export runs ONNX Runtime sessions for its parity check; the runtime then stays loaded for
# longer than its telemetry waits before its first lookup (about 10 s after it starts).
SCRIPT = r"""
import sys, time
from studio.cli import main
code = main(["export-onnx", "emoji-vae", "--out", sys.argv[1]])
time.sleep(18)
print("RESULT", code)
"""
INTERNET = re.compile(r"socket\((AF_INET|AF_INET6)|connect\(\d+, \{sa_family=AF_INET")


def isolated_network() -> list[str]:
    """A prefix that runs a command with no network at all, when this machine allows it."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-n", "true"], capture_output=True).returncode == 0:
        return [unshare, "-n"]
    return []


@pytest.mark.slow
def test_onnx_runtime_opens_no_internet_socket_from_any_thread(tmp_path, sandbox_dirs):
    strace = shutil.which("strace")
    if strace is None:
        if os.environ.get("CI"):
            pytest.fail("strace is needed to see native threads' sockets: apt-get install strace")
        pytest.skip("strace is not installed (apt-get install strace)")
    trace = tmp_path / "trace.txt"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ORT_", "HF_", "TRANSFORMERS_")) and k != "STUDIO_EMBEDDED_MODELS_DIR"
    }
    command = [
        *isolated_network(),
        strace,
        "-f",
        "-e",
        "trace=socket,connect,sendto,sendmsg",
        "-o",
        str(trace),
        sys.executable,
        "-c",
        SCRIPT,
        str(tmp_path / "emoji-vae-onnx"),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=400, stdin=subprocess.DEVNULL)
    assert "RESULT 0" in done.stdout, done.stderr[-2000:]
    internet = [line for line in trace.read_text().splitlines() if INTERNET.search(line)]
    assert internet == []
