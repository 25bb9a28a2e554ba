"""The harness's API client against a stand-in server's keep-alive (tests/stub_http.py)."""

import time

from stub_http import JSONHandler, serve

from harness.sut.api import KEEPALIVE_EXPIRY, PrefectAPI


class ClosesIdleConnections(JSONHandler):
    """Answers the first request of a connection; the next one on the same connection meets the
    close a server makes of a connection idle past its keep-alive timeout (uvicorn's 5 s), as if
    the two crossed: the connection ends with no answer."""

    def do_GET(self):
        if getattr(self, "served", False):
            self.close_connection = True
            return
        self.served = True
        self.answer({"ok": True})


def test_a_connection_idle_near_the_servers_keep_alive_timeout_is_not_reused():
    """Seen in CI: a direct call after a case met 'Server disconnected without sending a
    response'. The client drops an idle connection after KEEPALIVE_EXPIRY, before the server's."""
    from prefect.settings import PREFECT_SERVER_API_KEEPALIVE_TIMEOUT

    assert KEEPALIVE_EXPIRY < PREFECT_SERVER_API_KEEPALIVE_TIMEOUT.value()
    with serve(ClosesIdleConnections) as port:
        api = PrefectAPI(f"http://127.0.0.1:{port}")
        try:
            assert api._call("GET", "/first") == {"ok": True}
            time.sleep(KEEPALIVE_EXPIRY + 0.3)
            assert api._call("GET", "/after-idle") == {"ok": True}  # a new connection, answered
        finally:
            api.close()
