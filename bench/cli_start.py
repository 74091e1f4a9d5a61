"""How long the `stapes` CLI takes for the commands typed most (`list`, `info NAME`,
`exec NAME -- true`) against the incus client's time for the same commands on the same
throwaway stapesd (one running busybox container), so the daemon's part is the same on both
sides and the ratio is the clients'; and the incus client against the real Incus
(../shared/tools/incus-anchor start) when it runs. Also the same commands through the click
command tree (`python -c 'from stapes.cli.main import main; main()'`), the path every other
command takes. Compiled bytecode is written first (a fresh checkout has none).

Prints medians and p90s (milliseconds) and ratios. Run as root: `make bench`."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile

from common import BIN, INCUS_SOCKET, line, stapes_daemon, timed

RUNS = int(os.environ.get("BENCH_RUNS", "21"))
INCUS = shutil.which("incus") or "/usr/bin/incus"
FULL = [sys.executable, "-c", "from stapes.cli.main import main; main()"]


def quiet(argv: list[str], env: dict[str, str]) -> None:
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   stdin=subprocess.DEVNULL, check=True)  # fmt: skip


def main() -> None:
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(BIN.parent.parent / "src")],
                   check=False, capture_output=True)  # fmt: skip
    with stapes_daemon() as daemon, tempfile.TemporaryDirectory() as conf:
        env = {k: v for k, v in daemon.env.items() if k != "PYTHONDONTWRITEBYTECODE"}
        subprocess.run([str(BIN / "stapes"), "launch", "bb", "c1"], env=env, check=True,
                       capture_output=True)  # fmt: skip
        incus_env = {**env, "INCUS_SOCKET": str(daemon.root / "unix.socket"),
                     "INCUS_CONF": conf}  # fmt: skip
        commands = {"list": ["list"], "info": ["info", "c1"], "exec": ["exec", "c1", "--", "true"]}
        print(f"CLI start and run, {RUNS} runs each, against one stapesd (ms):")
        for label, args in commands.items():
            stapes = functools.partial(quiet, [str(BIN / "stapes"), *args], env)
            ours = line(f"stapes {label}", timed(stapes, RUNS))
            click = functools.partial(quiet, [*FULL, *args], env)
            full = line("  the same through click", timed(click, RUNS))
            incus = functools.partial(quiet, [INCUS, *args], incus_env)
            theirs = line(f"incus {label} (same daemon)", timed(incus, RUNS))
            print(f"  stapes/incus {ours / theirs:.2f}x (through click {full / theirs:.2f}x)")
        if INCUS_SOCKET.exists():
            real_env = {**os.environ, "INCUS_SOCKET": str(INCUS_SOCKET), "INCUS_CONF": conf}
            quiet([INCUS, "launch", "bb", "stapes-cli-bench"], real_env)
            try:
                for label, args in commands.items():
                    args = [a.replace("c1", "stapes-cli-bench") for a in args]
                    real = functools.partial(quiet, [INCUS, *args], real_env)
                    line(f"incus {label} against Incus", timed(real, RUNS))
            finally:
                quiet([INCUS, "delete", "-f", "stapes-cli-bench"], real_env)
        subprocess.run([str(BIN / "stapes"), "delete", "-f", "c1"], env=env, check=False,
                       capture_output=True)  # fmt: skip


if __name__ == "__main__":
    main()
