"""The web UI at /ui/, driven in Debian's real Chromium by Playwright over HTTPS with a client
certificate, as a person would use it: enrol with a trust token, create and start a container,
see it running with an address, run a command in the web terminal, take and restore a
snapshot, meet an ETag conflict in the profile editor, watch a graph get points, delete the
instance. An untrusted browser sees only the enrolment page; a restricted certificate sees only
its projects. Screenshots of each page are kept under build/ui-screenshots/."""

from __future__ import annotations

import io
import shutil
import subprocess
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser import CHROMIUM, launch
from tests.helpers import ClientCert, Daemon, free_port, https_request, unique
from tests.integration.test_oidc import Issuer
from tests.integration.test_remote_access import CERTS, new_token

pytestmark = [pytest.mark.root, pytest.mark.liblxc, pytest.mark.timeout(900)]

SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "ui-screenshots"


def _ui_built() -> bool:
    from stapes.server.ui import ui_directory

    return ui_directory() is not None


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (scripts/setup-host.sh installs it)")
    if not _ui_built():
        pytest.skip("the web UI is not built (scripts/setup-host.sh builds ui/ with npm)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            yield browser
        finally:
            browser.close()


def _context(chromium: Any, https: str, client: ClientCert | None) -> Any:
    certificates = (
        [{"origin": f"https://{https}", "certPath": str(client.cert), "keyPath": str(client.key)}]
        if client
        else []
    )
    context = chromium.new_context(
        ignore_https_errors=True,
        client_certificates=certificates,
        viewport={"width": 1280, "height": 800},
    )
    context.set_default_timeout(30_000)
    return context


def _shoot(page: Any, name: str) -> None:
    """A screenshot of the page as it is, kept, and checked not to be blank."""
    from PIL import Image

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    data = page.screenshot(full_page=True)
    (SCREENSHOTS / f"{name}.png").write_bytes(data)
    image = Image.open(io.BytesIO(data)).convert("L")
    low, high = image.getextrema()
    assert high - low > 64, f"screenshot {name} is blank"
    assert len(image.getcolors(maxcolors=1 << 16) or range(1 << 16)) > 8, f"{name} has no content"


def test_the_ui_files_are_served_to_everyone_and_nothing_outside_them(https: str) -> None:
    if not _ui_built():
        pytest.skip("the web UI is not built (scripts/setup-host.sh builds ui/ with npm)")
    resp, _ = https_request(https, "GET", "/ui/")
    assert resp.status == 200 and b"/ui/assets/app.js" in resp.body
    assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
    resp, _ = https_request(https, "GET", "/ui/instances/c1")  # a page of the app: its index
    assert resp.status == 200 and b"/ui/assets/app.js" in resp.body
    resp, _ = https_request(https, "GET", "/ui/assets/app.js")
    assert resp.status == 200 and resp.headers["Content-Type"].startswith(
        ("application/javascript", "text/javascript")
    )
    for path in ("/ui/assets/nothing.js", "/ui/%2e%2e/%2e%2e/pyproject.toml", "/ui/..%2fREADME.md"):
        resp, _ = https_request(https, "GET", path)
        assert resp.status == 404, (path, resp.status)
        assert resp.json()["type"] == "error"
    resp, _ = https_request(https, "GET", "/ui")
    assert resp.status == 301 and resp.headers["Location"] == "/ui/"
    browser = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0"}
    resp, _ = https_request(https, "GET", "/", headers=browser)
    assert resp.status == 301 and resp.headers["Location"] == "/ui/"
    resp, _ = https_request(https, "GET", "/")  # an API client still gets the API's root
    assert resp.status == 200 and resp.json()["metadata"] == ["/1.0"]


def test_an_untrusted_browser_sees_only_the_enrolment_page(
    chromium: Any, daemon: Daemon, https: str, tmp_path: Path
) -> None:
    stranger = ClientCert(tmp_path, "stranger")
    for client in (None, stranger):
        context = _context(chromium, https, client)
        try:
            page = context.new_page()
            page.goto(f"https://{https}/ui/#/instances")
            enrolment = page.locator("section.enrol")
            enrolment.wait_for()
            assert "This browser is not trusted by the server yet" in enrolment.inner_text()
            assert page.locator("nav.sidebar").count() == 0
            assert page.locator("table").count() == 0
            page.fill("textarea[name=token]", "not-a-token")
            page.click("text=Enrol this browser")
            page.locator(".error").wait_for()
            assert page.locator("nav.sidebar").count() == 0
            _shoot(page, "enrolment" if client is None else "enrolment-refused")
        finally:
            context.close()
    assert daemon.request("GET", CERTS).metadata == []


def _sh(daemon: Daemon, name: str, script: str) -> None:
    """A command run in the instance through the API (not the page under test)."""
    body = {"command": ["sh", "-c", script], "wait-for-websocket": False}
    daemon.ok(daemon.request("POST", f"/1.0/instances/{name}/exec", body))


def _wait_for(check: Any, what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_user_runs_an_instance_from_the_browser(
    chromium: Any,
    daemon: Daemon,
    https: str,
    network: tuple[str, str],
    busybox: str,
    tmp_path: Path,
) -> None:
    bridge, address = network
    profile = unique("uiprof")
    assert daemon.request("POST", "/1.0/profiles", {"name": profile}).status == 201
    name = unique("uic")
    browser_cert = ClientCert(tmp_path, "browser")
    token, _ = new_token(daemon, "browser")
    context = _context(chromium, https, browser_cert)
    try:
        page = context.new_page()
        base = f"https://{https}/ui/"
        page.goto(base)
        # enrol: the token pasted into the page makes this browser's certificate trusted
        page.fill("textarea[name=token]", token)
        page.click("text=Enrol this browser")
        page.locator("nav.sidebar").wait_for()
        (cert,) = daemon.request("GET", f"{CERTS}?recursion=1").metadata
        assert cert["fingerprint"] == browser_cert.fingerprint and cert["name"] == "browser"
        _shoot(page, "instances-empty")

        # create and start a container on the test's bridge
        page.click("text=Create instance")
        page.fill("input[name=name]", name)
        image = daemon.request("GET", f"/1.0/images/aliases/{busybox}").metadata["target"]
        page.select_option("select[name=image]", image)
        page.fill(
            "textarea[name=devices]",
            f"eth0:\n  type: nic\n  network: {bridge}\n  name: eth0\n",
        )
        _shoot(page, "create-instance")
        page.click("button:has-text('Create')")
        page.wait_for_url(f"**/#/instances/{name}")
        page.locator(".status-running").first.wait_for(timeout=60_000)
        # busybox's init configures no network: the guest is given its address as DHCP would
        guest = address.rsplit(".", 1)[0] + ".77/24"
        _sh(daemon, name, f"ip addr add {guest} dev eth0")
        page.locator("dd.addresses", has_text="(eth0)").wait_for(timeout=60_000)
        assert daemon.request("GET", f"/1.0/instances/{name}").metadata["status"] == "Running"
        _shoot(page, "instance-overview")
        page.click("nav.sidebar >> text=Instances")
        row = page.locator(f"tr[data-name='{name}']")
        row.locator(".status-running").wait_for()
        row.get_by_text("(eth0)").wait_for(timeout=30_000)
        assert row.locator("td").nth(5).inner_text().endswith("B")  # its memory, live
        _shoot(page, "instances")

        # a command in the web terminal, its output read back from the screen
        page.goto(f"{base}#/instances/{name}/terminal")
        page.locator(".xterm-helper-textarea").wait_for()
        page.wait_for_timeout(500)
        page.locator(".term-host").click()
        page.keyboard.type("echo web-$((6*7))-terminal; uname -s\n")
        page.locator(".xterm-rows", has_text="web-42-terminal").wait_for()
        _shoot(page, "terminal")

        # take a snapshot, change a file, restore it: the file is back as it was
        _sh(daemon, name, "echo before > /root/mark")
        page.goto(f"{base}#/instances/{name}/snapshots")
        page.once("dialog", lambda dialog: dialog.accept("ui-snap"))
        page.click("text=Take snapshot")
        page.locator("tr[data-name='ui-snap']").wait_for()
        _sh(daemon, name, "echo after > /root/mark")
        page.once("dialog", lambda dialog: dialog.accept())
        page.locator("tr[data-name='ui-snap']").get_by_text("Restore").click()
        page.locator("tr[data-name='ui-snap'] button:has-text('Restore')").wait_for()
        _wait_for(
            lambda: (
                page.locator("tr[data-name='ui-snap'] button:has-text('Restore…')").count() == 0
            ),
            "the restore",
        )
        resp = daemon.request("GET", f"/1.0/instances/{name}/files?path=/root/mark")
        assert resp.body == b"before\n"
        _shoot(page, "snapshots")

        # the file browser: into /root, a file uploaded there, another downloaded
        page.goto(f"{base}#/instances/{name}/files")
        page.locator(".file-list button", has_text="root").click()
        page.locator(".files .path", has_text="/root").wait_for()
        page.set_input_files(
            ".files input[type=file]",
            files=[{"name": "hello.txt", "mimeType": "text/plain", "buffer": b"from the page\n"}],
        )
        page.get_by_text("Uploaded /root/hello.txt.").wait_for()
        resp = daemon.request("GET", f"/1.0/instances/{name}/files?path=/root/hello.txt")
        assert resp.body == b"from the page\n"
        with page.expect_download() as download:
            page.locator(".file-list button", has_text="mark").click()
        assert Path(download.value.path()).read_bytes() == b"before\n"
        _shoot(page, "files")

        # the profile editor: saved with its ETag; a change made elsewhere meanwhile is a conflict
        page.goto(f"{base}#/profiles/{profile}")
        editor = page.locator(".yaml-editor textarea")
        editor.wait_for()
        _wait_for(lambda: "config" in editor.input_value(), "the profile's YAML")
        editor.fill("description: from the browser\nconfig:\n  user.ui: one\ndevices: {}\n")
        page.click("text=Save")
        page.get_by_text("Saved.").wait_for()
        saved = daemon.request("GET", f"/1.0/profiles/{profile}").metadata
        assert saved["description"] == "from the browser" and saved["config"] == {"user.ui": "one"}
        resp = daemon.request("PATCH", f"/1.0/profiles/{profile}", {"config": {"user.cli": "x"}})
        assert resp.status == 200, resp.body
        editor.fill("description: overwrite\nconfig: {}\ndevices: {}\n")
        page.click("text=Save")
        page.locator(".error", has_text="Conflict").wait_for()
        kept = daemon.request("GET", f"/1.0/profiles/{profile}").metadata
        assert kept["description"] == "from the browser" and kept["config"]["user.cli"] == "x"
        _shoot(page, "profile-conflict")

        # graphs: the daemon samples the running instance; the charts get points
        page.goto(f"{base}#/instances/{name}/graphs")
        chart = page.locator(".chart[data-chart=memory]")
        chart.wait_for()
        _wait_for(
            lambda: int(chart.get_attribute("data-points") or 0) >= 2, "two samples", timeout=45
        )
        page.locator(".chart[data-chart=cpu] canvas").first.wait_for()
        _shoot(page, "graphs")

        # events as they happen: a snapshot taken elsewhere shows up on the operations page
        page.goto(f"{base}#/operations")
        page.locator("main h1", has_text="Operations").wait_for()
        page.wait_for_timeout(500)  # the events websocket connects
        daemon.ok(daemon.request("POST", f"/1.0/instances/{name}/snapshots", {"name": "ev"}))
        page.locator(".events li", has_text="instance-snapshot-created").wait_for()
        _shoot(page, "operations-events")

        # every other page renders without an error
        for section in (
            "images",
            "profiles",
            "projects",
            "storage",
            "networks",
            "operations",
            "warnings",
            "server",
        ):
            page.goto(f"{base}#/{section}")
            page.locator("main h1").wait_for()
            page.locator("table, dl.kv, p.empty").first.wait_for()
            assert page.locator("main .error").count() == 0, section
            _shoot(page, section)

        # freeze and unfreeze, stop, rename, then delete from the list
        page.goto(f"{base}#/instances/{name}")
        page.click(".actions button:has-text('Freeze')")
        page.locator("dd .status-frozen").wait_for()
        assert daemon.request("GET", f"/1.0/instances/{name}").metadata["status"] == "Frozen"
        page.click(".actions button:has-text('Unfreeze')")
        page.locator("dd .status-running").wait_for()
        page.goto(f"{base}#/instances")
        row = page.locator(f"tr[data-name='{name}']")
        row.get_by_text("Stop").click()
        row.locator(".status-stopped").wait_for(timeout=60_000)
        page.goto(f"{base}#/instances/{name}")
        renamed = name + "-r"
        page.once("dialog", lambda dialog: dialog.accept(renamed))
        page.click(".actions button:has-text('Rename')")
        page.wait_for_url(f"**/#/instances/{renamed}")
        assert daemon.request("GET", f"/1.0/instances/{name}").status == 404
        name = renamed
        page.goto(f"{base}#/instances")
        row = page.locator(f"tr[data-name='{name}']")
        page.once("dialog", lambda dialog: dialog.accept())
        row.get_by_text("Delete").click()
        row.wait_for(state="detached", timeout=60_000)
        assert daemon.request("GET", f"/1.0/instances/{name}").status == 404
    finally:
        context.close()
        daemon.force_delete(name)
        daemon.request("DELETE", f"/1.0/profiles/{profile}")


def test_a_restricted_certificate_sees_only_its_projects(
    chromium: Any, daemon: Daemon, https: str, busybox: str, tmp_path: Path
) -> None:
    project = unique("uiproj")
    body = {"name": project, "config": {"features.profiles": "false"}}  # the default profile
    assert daemon.request("POST", "/1.0/projects", body).status == 201
    hidden = daemon.launch(busybox)
    own = unique("uiown")
    restricted = ClientCert(tmp_path, "restricted")
    certificate = restricted.cert.read_text()
    body = {"type": "client", "certificate": certificate, "restricted": True, "projects": [project]}
    assert daemon.request("POST", CERTS, body).status == 201
    daemon.ok(
        daemon.request(
            "POST",
            f"/1.0/instances?project={project}",
            {"name": own, "source": {"type": "none"}, "type": "container"},
        )
    )
    context = _context(chromium, https, restricted)
    try:
        page = context.new_page()
        page.goto(f"https://{https}/ui/#/instances")
        page.locator(f"tr[data-name='{own}']").wait_for()
        options = page.locator(".project-picker option").all_inner_texts()
        assert options == [project]
        assert page.locator(f"tr[data-name='{hidden}']").count() == 0
        _shoot(page, "restricted-instances")
        page.goto(f"https://{https}/ui/#/projects")
        page.locator("main table").wait_for()
        assert page.locator("main tbody tr").count() == 1
        # what the page could ask for, the API refuses: another project's instance and graphs
        for path in (f"/1.0/instances/{hidden}", f"/1.0/instances/{hidden}/metrics"):
            resp, _ = https_request(https, "GET", f"{path}?project=default", client=restricted)
            assert resp.status == 403, path
    finally:
        context.close()
        daemon.force_delete(hidden)
        daemon.request("DELETE", f"/1.0/instances/{own}?project={project}")
        daemon.request("DELETE", f"{CERTS}/{restricted.fingerprint}")
        daemon.request("DELETE", f"/1.0/projects/{project}")
        shutil.rmtree(tmp_path, ignore_errors=True)


def test_a_browser_logs_in_with_oidc(chromium: Any, daemon: Daemon, https: str) -> None:
    resp, _ = https_request(https, "GET", "/oidc/login")
    assert resp.status == 404 and "oidc.issuer" in resp.json()["error"]
    issuer = Issuer()
    issuer.thread.start()
    issuer.add_key()
    oidc = {"oidc.issuer": issuer.url, "oidc.client.id": "stapes"}
    assert daemon.request("PATCH", "/1.0", {"config": oidc}).status == 200
    context = _context(chromium, https, None)
    try:
        # the login is sent to the issuer with PKCE; a callback it did not start is refused
        resp, _ = https_request(https, "GET", "/oidc/login")
        assert resp.status == 302
        sent = urllib.parse.urlsplit(resp.headers["Location"])
        params = dict(urllib.parse.parse_qsl(sent.query))
        assert f"{sent.scheme}://{sent.netloc}{sent.path}" == f"{issuer.url}/authorize"
        assert params["redirect_uri"] == f"https://{https}/oidc/callback"
        assert params["code_challenge_method"] == "S256" and params["client_id"] == "stapes"
        forged = f"/oidc/callback?code=x&state={params['state']}"  # no state cookie: not ours
        assert https_request(https, "GET", forged)[0].status == 400

        page = context.new_page()
        page.goto(f"https://{https}/ui/")
        issuer.access_seconds = 3  # expires soon: refreshed below
        expires = time.time() + issuer.access_seconds
        page.click("a[href='/oidc/login']")
        page.locator("nav.sidebar").wait_for()
        assert "ada@example.org" in page.locator(".who").inner_text()
        page.locator("main h1", has_text="Instances").wait_for()
        _shoot(page, "oidc-logged-in")

        # an expired access token is refreshed with the refresh token, in the background
        (access,) = [c["value"] for c in context.cookies() if c["name"] == "oidc_access"]
        resp, _ = https_request(https, "GET", "/1.0", headers={"Cookie": f"oidc_access={access}"})
        assert resp.metadata["auth_user_name"] == "ada@example.org"  # the cookie is the login
        for origin, trusted in ((f"https://{https}", True), ("https://127.0.0.1:1", False)):
            headers = {"Cookie": f"oidc_access={access}", "Origin": origin}
            resp, _ = https_request(https, "GET", "/1.0", headers=headers)
            assert (resp.metadata["auth"] == "trusted") is trusted, origin  # no other origin
        time.sleep(max(0.0, expires - time.time()) + 1)
        page.goto(f"https://{https}/ui/#/profiles")
        page.locator("tr[data-name=default]").wait_for()  # listed: the API took the browser
        refreshed = issuer.refreshed
        assert refreshed >= 1
        renewed = next(c for c in context.cookies() if c["name"] == "oidc_access")["value"]
        assert renewed != access
        issuer.access_seconds = 300
        context.clear_cookies(name="oidc_access")  # the refresh token alone gets a new one
        page.reload()
        page.locator("tr[data-name=default]").wait_for()
        assert issuer.refreshed > refreshed

        page.click("a[href='/oidc/logout']")
        page.locator("section.enrol").wait_for()
        assert not [c for c in context.cookies() if c["name"].startswith("oidc_")]
    finally:
        context.close()
        daemon.request("PATCH", "/1.0", {"config": {"oidc.issuer": "", "oidc.client.id": ""}})
        issuer.server.shutdown()
        issuer.server.server_close()


def test_a_vm_screen_in_the_browser(
    chromium: Any, daemon: Daemon, https: str, vm: str, tmp_path: Path
) -> None:
    viewer = ClientCert(tmp_path, "viewer")
    body = {"type": "client", "name": "viewer", "certificate": viewer.cert.read_text()}
    assert daemon.request("POST", CERTS, body).status == 201
    context = _context(chromium, https, viewer)
    try:
        page = context.new_page()
        page.goto(f"https://{https}/ui/#/instances/{vm}/console")
        page.click("text=Screen (VGA)")
        page.get_by_text("Display: connected").wait_for(timeout=60_000)
        screen = page.locator(".vga canvas")
        screen.wait_for()  # visible: scaled to the page, not to nothing
        box = screen.bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 150
        _shoot(page, "vm-screen")
        page.click("text=Text console")
        page.locator(".term-host .xterm").wait_for()
    finally:
        context.close()


INCUS_SOCKET = Path("/var/lib/incus/unix.socket")


def test_the_same_ui_runs_against_real_incus(chromium: Any, tmp_path: Path) -> None:
    """The UI is only an API client: served by real Incus (INCUS_UI), its pages work there."""
    if not INCUS_SOCKET.exists() or shutil.which("incus") is None:
        pytest.skip(f"no real Incus daemon on {INCUS_SOCKET} (../shared/tools/incus-anchor start)")
    incus = ["env", f"INCUS_SOCKET={INCUS_SOCKET}", "incus"]

    def run(*argv: str) -> str:
        return subprocess.run([*incus, *argv], check=True, capture_output=True, text=True).stdout

    address = f"127.0.0.1:{free_port()}"
    if run("config", "get", "core.https_address").strip():
        pytest.skip("real Incus already listens on HTTPS: not changed by this test")
    run("config", "set", "core.https_address", address)
    browser = ClientCert(tmp_path, "incus-browser")
    name = unique("uiincus")
    try:
        if b"/ui/assets/app.js" not in https_request(address, "GET", "/ui/")[0].body:
            pytest.skip("real Incus does not serve this UI: start it with INCUS_UI=$PWD/ui/dist")
        run("config", "trust", "add-certificate", str(browser.cert))
        run("init", "bb", name)
        context = _context(chromium, f"{address}", browser)
        page = context.new_page()
        sections = ["instances", f"instances/{name}", f"instances/{name}/snapshots",
                    f"instances/{name}/graphs",
                    "images", "profiles", "profiles/default", "projects", "storage", "networks",
                    "operations", "warnings", "server"]  # fmt: skip
        for section in sections:
            page.goto(f"https://{address}/ui/#/{section}")
            page.locator("main h1").wait_for()
            page.locator("table, dl.kv, p.empty, .yaml-editor textarea").first.wait_for()
            assert page.locator("main .error").count() == 0, section
        page.goto(f"https://{address}/ui/#/instances")
        page.locator(f"tr[data-name='{name}'] .status-stopped").wait_for()
        _shoot(page, "incus-instances")
        context.close()
    finally:
        subprocess.run([*incus, "delete", "-f", name], capture_output=True)
        subprocess.run(
            [*incus, "config", "trust", "remove", browser.fingerprint], capture_output=True
        )
        subprocess.run([*incus, "config", "unset", "core.https_address"], capture_output=True)


def test_images_imported_from_a_remote_aliased_and_deleted_in_the_browser(
    chromium: Any, lone: Daemon, second_host: tuple[Daemon, str], tmp_path: Path
) -> None:
    daemon = lone  # a server of its own: the image it imports and deletes is nobody else's
    https = f"127.0.0.1:{free_port()}"
    assert daemon.request("PATCH", "/1.0", {"config": {"core.https_address": https}}).status == 200
    far, far_address = second_host
    far.cli("image", "build", "busybox", "--alias", "bb")
    fingerprint = far.request("GET", "/1.0/images/aliases/bb").metadata["target"]
    assert far.request("PATCH", f"/1.0/images/{fingerprint}", {"public": True}).status == 200
    pem = far.request("GET", "/1.0").metadata["environment"]["certificate"]
    user = ClientCert(tmp_path, "images")
    body = {"type": "client", "name": "images", "certificate": user.cert.read_text()}
    assert daemon.request("POST", CERTS, body).status == 201
    alias, extra = unique("uiimg"), unique("uialias")
    context = _context(chromium, https, user)
    try:
        page = context.new_page()
        page.goto(f"https://{https}/ui/#/images")
        page.click("text=Import from a remote")
        page.fill("input[name=server]", f"https://{far_address}")
        page.fill("input[name=alias]", "bb")
        page.fill("input[name=local]", alias)
        page.fill("textarea[name=certificate]", pem)
        page.click(".inline-form button:has-text('Import')")
        row = page.locator(f"tr[data-name='{fingerprint}']")
        row.wait_for(timeout=60_000)
        assert alias in row.inner_text()
        _shoot(page, "images")
        page.once("dialog", lambda dialog: dialog.accept(extra))
        row.get_by_text("Add alias").click()
        row.get_by_text(extra).wait_for()
        assert daemon.request("GET", f"/1.0/images/aliases/{extra}").metadata["target"] == (
            fingerprint
        )
        page.once("dialog", lambda dialog: dialog.accept())
        row.get_by_text("Delete").click()
        row.wait_for(state="detached")
        assert daemon.request("GET", f"/1.0/images/{fingerprint}").status == 404
    finally:
        context.close()


def test_a_network_page_shows_its_leases_forwards_and_acls(
    chromium: Any,
    daemon: Daemon,
    https: str,
    network: tuple[str, str],
    busybox: str,
    listen_address: str,
    tmp_path: Path,
) -> None:
    bridge, _ = network
    nic = {"eth0": {"type": "nic", "network": bridge, "name": "eth0"}}
    name = daemon.launch(busybox, unique("uinet"), devices=nic)
    acl = unique("uiacl")
    rule = {"action": "allow", "protocol": "tcp", "destination_port": "22", "state": "enabled"}
    user = ClientCert(tmp_path, "netview")
    body = {"type": "client", "name": "netview", "certificate": user.cert.read_text()}
    assert daemon.request("POST", CERTS, body).status == 201
    forwards = f"/1.0/networks/{bridge}/forwards"
    context = _context(chromium, https, user)
    try:
        _sh(daemon, name, f"udhcpc -i eth0 -n -q -s /bin/true -x hostname:{name}")
        assert (
            daemon.request("POST", "/1.0/network-acls", {"name": acl, "ingress": [rule]}).status
            == 201
        )
        patch = {"config": {"security.acls": acl}}
        assert daemon.request("PATCH", f"/1.0/networks/{bridge}", patch).status == 200
        leases = daemon.request("GET", f"/1.0/networks/{bridge}/leases").metadata
        (leased,) = [lease["address"] for lease in leases if lease["hostname"] == name]
        port = {"protocol": "tcp", "listen_port": "8022", "target_address": leased}
        forward = {"listen_address": listen_address, "ports": [port]}
        assert daemon.request("POST", forwards, forward).status == 201
        page = context.new_page()
        page.goto(f"https://{https}/ui/#/networks")
        page.locator(f"tr[data-name='{bridge}'] a").click()
        page.locator("main table tr", has_text=name).wait_for()  # its DHCP lease
        page.locator("main table tr", has_text=listen_address).wait_for()
        page.locator("main table tr", has_text=acl).wait_for()
        assert "tcp/8022" in page.locator("main table tr", has_text=listen_address).inner_text()
        _shoot(page, "network")
    finally:
        context.close()
        daemon.request("DELETE", f"{forwards}/{listen_address}")
        daemon.request("PATCH", f"/1.0/networks/{bridge}", {"config": {"security.acls": ""}})
        daemon.request("DELETE", f"/1.0/network-acls/{acl}")
        daemon.force_delete(name)
