"""admap view --serve over real loopback connections: the page and nothing else, on 127.0.0.1 only, to requests
addressed to 127.0.0.1 or localhost; the folder around the page, its parent and the rest of the disk stay unreachable.
"""

import contextlib
import http.client
import threading

import pytest

from admap import view

PAGE = b"<!doctype html><title>map</title><p>the page"
SECRET = "do-not-serve-0f3c"


@pytest.fixture()
def site(tmp_path):
    """A page with secrets beside it, in a folder beside it, and in its parent folder."""
    folder = tmp_path / "site"
    (folder / "sub").mkdir(parents=True)
    page = folder / "view.html"
    page.write_bytes(PAGE)
    for secret in (folder / "secret.txt", folder / "sub" / "secret.txt", tmp_path / "secret.txt"):
        secret.write_text(SECRET)
    (folder / ".view.html.partial").write_text(SECRET)
    return page


@contextlib.contextmanager
def serving(page):
    """The server for ``page``, serving in a thread until the block ends."""
    with view.make_server(page, 0) as server:
        # A short poll keeps shutdown, and so each test, quick.
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
        thread.start()
        try:
            yield server
        finally:
            server.shutdown()
            thread.join(timeout=10)


@pytest.fixture()
def server(site):
    with serving(site) as server:
        yield server


def request(server, method: str, path: str, *, host: str | None = None, hosts: list[str] | None = None):
    """One request on a fresh connection; Host is ``127.0.0.1:PORT`` unless ``host`` or ``hosts`` (sent as given,
    several Host lines, or none for ``[]``) says otherwise. Returns (status, headers, body)."""
    port = server.server_address[1]
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for value in [host or f"127.0.0.1:{port}"] if hosts is None else hosts:
            connection.putheader("Host", value)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def test_listens_on_loopback_only(server):
    assert server.socket.getsockname()[0] == "127.0.0.1"
    assert server.server_address[0] == "127.0.0.1"


@pytest.mark.parametrize("path", ["/", "/view.html", "/view.html?x=1", "/%76iew.html"])
def test_the_page_is_served_at_its_own_paths(server, path):
    status, headers, body = request(server, "GET", path)
    assert (status, body) == (200, PAGE)
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_head_gives_the_page_headers_without_a_body(server):
    status, headers, body = request(server, "HEAD", "/view.html")
    assert (status, body) == (200, b"")
    assert headers["Content-Length"] == str(len(PAGE))


@pytest.mark.parametrize("host", ["localhost:{port}", "LOCALHOST:{port}", "127.0.0.1:{port}"])
def test_loopback_hosts_are_answered(server, host):
    assert request(server, "GET", "/", host=host.format(port=server.server_address[1]))[0] == 200


@pytest.mark.parametrize(
    "path",
    [
        "/secret.txt",
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/..%2fsecret.txt",
        "/%2e%2e%2fsecret.txt",
        "/sub/secret.txt",
        "/sub/",
        "/sub",
        "/.view.html.partial",
        "//etc/passwd",
        "/etc/passwd",
        "/../../../../../../etc/passwd",
        "/.",
        "/./",
        "/%2f",
        "/index.html",
        "/site/",
        "/site/view.html",
        "/./view.html",
        "/view.html/",
        "/view.html/../secret.txt",
        "http://127.0.0.1/secret.txt",
        "*",
    ],
)
def test_every_other_path_is_404_without_the_secret_or_a_listing(server, path):
    status, headers, body = request(server, "GET", path)
    assert status == 404
    assert SECRET.encode() not in body
    assert b"secret.txt" not in body and b"<a " not in body and b"Directory" not in body
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert len(body) < 100


@pytest.mark.parametrize(
    "hosts",
    [["evil.example:{port}"], ["evil.example"], ["localhost.evil.example:{port}"], ["127.0.0.1:1"], ["localhost"]],
)
def test_a_foreign_host_is_refused(server, hosts):
    port = server.server_address[1]
    status, _, body = request(server, "GET", "/view.html", hosts=[h.format(port=port) for h in hosts])
    assert status == 403
    assert PAGE not in body and len(body) < 100


def test_a_missing_or_repeated_host_is_refused(server):
    port = server.server_address[1]
    assert request(server, "GET", "/", hosts=[])[0] == 403
    status, _, body = request(server, "GET", "/", hosts=[f"127.0.0.1:{port}", "evil.example"])
    assert status == 403 and PAGE not in body


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "PATCH", "PROPFIND"])
def test_other_methods_are_refused(server, method):
    status, _, body = request(server, method, "/view.html")
    assert status == 501
    assert PAGE not in body and len(body) < 100


def test_the_page_is_read_once_at_start(server, site):
    # Changing the file afterwards, even into a link to a secret, changes nothing served.
    site.unlink()
    site.symlink_to(site.parent / "secret.txt")
    assert request(server, "GET", "/view.html")[2] == PAGE


def test_a_page_name_that_needs_quoting(tmp_path):
    page = tmp_path / "my map.html"
    page.write_bytes(PAGE)
    with serving(page) as server:
        status, _, body = request(server, "GET", "/my%20map.html")
        assert (status, body) == (200, PAGE)
        assert request(server, "GET", "/my")[0] == 404
