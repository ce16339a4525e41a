"""admap view --serve over real loopback connections: the page and nothing else, on 127.0.0.1 only, to requests
addressed to 127.0.0.1 or localhost; the folder around the page, its parent and the rest of the disk stay unreachable.
"""

import contextlib
import http.client
import json
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


@pytest.fixture()
def text_server(tmp_path):
    """A served page with its run's texts: three instructions, the middle one's response long and hostile."""
    import pandas as pd

    map_table = pd.DataFrame(
        {
            "instruction_id": ["a", "b", "c"],
            "instruction": ["Plant a tree", "Water the ZEBRA plant", "Paint a zebra"],
            "unmapped_reason": [None, None, "only 1 scored response(s)"],
        }
    )
    long_text = "</script>" + "x" * 50_000
    responses = pd.DataFrame(
        {
            "instruction_id": ["a", "b", "b", "c"],
            "response_id": ["a-0", "b-0", "b-1", "c-0"],
            "response": ["dig", long_text, "wait", "brush"],
            "model": ["m1", "m2", None, "m1"],
            "alignment_score": [0.5, 0.9, float("nan"), 0.1],
            "rating": [1.0, 5.0, 2.0, float("nan")],
            "response_chars": [3, len(long_text), 4, 5],
            "response_words": [1, 1, 1, 1],
        }
    )
    texts = view.PageInstructions.of(map_table, responses, None, 0)
    server = view.PageServer(PAGE, "view.html", 0, texts)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    yield server, long_text
    server.shutdown()
    thread.join(timeout=10)
    server.server_close()


def test_the_served_page_asks_for_an_instructions_texts_whole(text_server):
    server, long_text = text_server
    status, headers, body = request(server, "GET", "/api/instruction/1")
    assert status == 200 and headers["Content-Type"] == "application/json; charset=utf-8"
    assert headers["X-Content-Type-Options"] == "nosniff"
    detail = json.loads(body)
    assert (detail["id"], detail["text"], detail["unmapped_reason"]) == ("b", "Water the ZEBRA plant", None)
    assert [r["id"] for r in detail["responses"]] == ["b-0", "b-1"]
    assert detail["responses"][0] == {
        "id": "b-0",
        "text": long_text,
        "model": "m2",
        "score": 0.9,
        "rating": 5.0,
        "chars": len(long_text),
        "words": 1,
    }
    assert (detail["responses"][1]["model"], detail["responses"][1]["score"]) == (None, None)
    assert json.loads(request(server, "GET", "/api/instruction/2")[2])["unmapped_reason"] == "only 1 scored response(s)"


def test_the_served_search_finds_what_the_pages_own_would(text_server):
    server, _ = text_server
    found = json.loads(request(server, "GET", "/api/search?q=%20zebra%20")[2])
    assert found["count"] == 2 and list(view.unpacked(found["indices"])) == [1, 2]
    assert found["texts"] == ["Water the ZEBRA plant", "Paint a zebra"]
    assert json.loads(request(server, "GET", "/api/search?q=A")[2])["count"] == 3  # the id, and every text
    assert json.loads(request(server, "GET", "/api/search?q=")[2])["count"] == 0


@pytest.mark.parametrize(
    "path", ["/api/instruction/3", "/api/instruction/-1", "/api/instruction/1/", "/api/instruction/x", "/api/", "/api"]
)
def test_other_questions_are_404(text_server, path):
    server, _ = text_server
    status, _, body = request(server, "GET", path)
    assert status == 404 and len(body) < 100


def test_a_page_without_texts_answers_no_question(server):
    assert request(server, "GET", "/api/instruction/0")[0] == 404
    assert request(server, "GET", "/api/search?q=a")[0] == 404


def test_a_foreign_host_gets_no_texts(text_server):
    server, long_text = text_server
    status, _, body = request(server, "GET", "/api/instruction/1", hosts=["evil.example"])
    assert status == 403 and long_text.encode() not in body
