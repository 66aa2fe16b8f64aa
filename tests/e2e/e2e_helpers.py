"""Shared by the end-to-end flow tests: run a command and fail with its output's tail."""
import subprocess


def run(command, env, cwd):
    result = subprocess.run([str(c) for c in command], env=env, cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result
