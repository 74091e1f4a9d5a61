"""The web UI: how long the instance list takes to load at INSTANCES (100) instances (RUNNING of
them running), in Debian's chromium driven by Playwright over HTTPS with a client certificate.

Prints the median and p90 of a cold load (a new browser context: nothing cached, a new TLS
session) and of a warm load (the same context, the files cached), each from the navigation's
start to the table showing every instance with its state (the page marks that moment), against
the floor: the API call the page waits for (`GET /1.0/instances?recursion=2`) fetched from
inside the page, and, for reference, from Python. With real Incus started with this UI
(`INCUS_UI=$PWD/ui/dist ../shared/tools/incus-anchor start`) the same page is measured against
Incus in the same run (the UI is only an API client, so it runs there unchanged). Run as root:
`make bench`."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from common import BIN, INCUS_SOCKET, line, real_incus, stapes_daemon, timed

from stapes import certs

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' browser set-up
from tests.browser import CHROMIUM, launch

INSTANCES = int(os.environ.get("BENCH_INSTANCES", "100"))
RUNNING = int(os.environ.get("BENCH_RUNNING", "10"))
RUNS = int(os.environ.get("BENCH_RUNS", "7"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def client_cert(work: Path) -> tuple[Path, Path]:
    cert, key = certs.generate("bench-ui")
    paths = work / "ui.crt", work / "ui.key"
    paths[0].write_bytes(cert)
    paths[1].write_bytes(key)
    return paths


def fill(cli: list[str], count: int, running: int) -> list[str]:
    names = [f"ui{n:03d}" for n in range(count)]
    for n, name in enumerate(names):
        verb = "launch" if n < running else "init"
        subprocess.run([*cli, verb, "bb", name], check=True, capture_output=True)
    return names


def empty(cli: list[str], names: list[str]) -> None:
    for name in names:
        subprocess.run([*cli, "delete", "-f", name], capture_output=True)


def api_floor(address: str, cert: Path, key: Path) -> list[float]:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.load_cert_chain(cert, key)
    url = f"https://{address}/1.0/instances?recursion=2&project=default"

    def get() -> None:
        with urllib.request.urlopen(url, context=context) as resp:
            resp.read()

    return timed(get, RUNS)


RENDERED = "stapes:instances-rendered"
FETCH = """async (url) => {
  const start = performance.now();
  const answer = await fetch(url);
  await answer.json();
  return performance.now() - start;
}"""


def page_loads(
    address: str, cert: Path, key: Path, count: int
) -> tuple[list[float], list[float], list[float]]:
    """(cold loads, warm loads, the API call from the page): seconds from the navigation's
    start to the list on screen (the page marks it), and one fetch of what the list shows,
    from inside the page (through the same TLS as the page's own requests: Playwright relays
    a client certificate's connections through its driver, which costs the page and the
    fetch alike)."""
    from playwright.sync_api import sync_playwright

    cold: list[float] = []
    warm: list[float] = []
    fetches: list[float] = []
    url = f"https://{address}/ui/#/instances"
    certificate = {"origin": f"https://{address}", "certPath": str(cert), "keyPath": str(key)}
    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            for _ in range(RUNS):
                context = browser.new_context(
                    ignore_https_errors=True, client_certificates=[certificate]
                )
                page = context.new_page()
                for samples in (cold, warm):
                    page.goto("about:blank")  # the second load is a new document too
                    page.goto(url)
                    page.locator("main tbody tr").nth(count - 1).wait_for(timeout=60_000)
                    mark = f"performance.getEntriesByName({RENDERED!r})[0].startTime"
                    samples.append(page.evaluate(mark) / 1000)
                api = "/1.0/instances?recursion=2&project=default"
                fetches.append(page.evaluate(FETCH, api) / 1000)
                context.close()
        finally:
            browser.close()
    return cold, warm, fetches


def report(label: str, address: str, cert: Path, key: Path, count: int) -> tuple[float, float]:
    print(f"{label}: {count} instances ({RUNNING} running), {RUNS} runs")
    line("GET /1.0/instances?recursion=2 from Python", api_floor(address, cert, key))
    cold, warm, fetches = page_loads(address, cert, key, count)
    floor = line("the same, fetched in the page (floor)", fetches)
    cold_ms = line("instance list page, cold", cold)
    warm_ms = line("instance list page, warm", warm)
    print(f"  page/floor: cold {cold_ms / floor:.2f}x, warm {warm_ms / floor:.2f}x")
    return cold_ms, warm_ms


def incus_side(cert: Path, key: Path) -> tuple[float, float] | None:
    server = real_incus()
    if server is None:
        return None
    server.close()
    incus = ["env", f"INCUS_SOCKET={INCUS_SOCKET}", shutil.which("incus") or "incus"]
    current = subprocess.run(
        [*incus, "config", "get", "core.https_address"], text=True, capture_output=True
    ).stdout.strip()
    address = current if current and not current.startswith(":") else f"127.0.0.1:{free_port()}"
    if not current:
        subprocess.run([*incus, "config", "set", "core.https_address", address], check=True)
    context = ssl._create_unverified_context()
    try:
        with urllib.request.urlopen(f"https://{address}/ui/", context=context) as resp:
            served = b"/ui/assets/app.js" in resp.read()
    except OSError:
        served = False
    names: list[str] = []
    added = False
    try:
        if not served:
            print(
                "Real Incus does not serve this UI: start it with "
                "INCUS_UI=$PWD/ui/dist ../shared/tools/incus-anchor start"
            )
            return None
        subprocess.run(
            [*incus, "config", "trust", "add-certificate", str(cert)],
            check=True,
            capture_output=True,
        )
        added = True
        names = fill(incus, INSTANCES, RUNNING)
        return report("Incus", address, cert, key, INSTANCES)
    finally:
        empty(incus, names)
        if added:
            fingerprint = certs.fingerprint(certs.parse(cert.read_bytes()))
            subprocess.run([*incus, "config", "trust", "remove", fingerprint], capture_output=True)
        if not current:
            subprocess.run([*incus, "config", "unset", "core.https_address"], capture_output=True)


def main() -> None:
    if not Path(CHROMIUM).exists():
        print("Debian's chromium is not installed (scripts/setup-host.sh with STAPES_SETUP_TEST=1)")
        return
    work = Path(tempfile.mkdtemp(prefix="bench-ui-"))
    try:
        cert, key = client_cert(work)
        with stapes_daemon() as stapes:
            cli = ["env", f"STAPES_DIR={stapes.root}", str(BIN / "stapes")]
            address = f"127.0.0.1:{free_port()}"
            subprocess.run([*cli, "config", "set", "core.https_address", address], check=True)
            subprocess.run(
                [*cli, "config", "trust", "add-certificate", str(cert)],
                check=True,
                capture_output=True,
            )
            names = fill(cli, INSTANCES, RUNNING)
            try:
                ours = report("Stapes", address, cert, key, INSTANCES)
            finally:
                empty(cli, names)
        theirs = incus_side(cert, key)
        if theirs is not None:
            print(f"Stapes/Incus: cold {ours[0] / theirs[0]:.2f}, warm {ours[1] / theirs[1]:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
