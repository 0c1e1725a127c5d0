"""A local Slack-compatible incoming webhook for the tests: `WebhookReceiver` records every POST
(what ALERT_WEBHOOK_URL receives) and answers `status`."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOOK_SECRET = "hook-secret-4c1d9e"  # the secret part of a Slack webhook URL


class WebhookReceiver:
    """A local Slack-compatible incoming webhook: records every POST, answers `status`."""

    def __init__(self) -> None:
        self.posts: list[dict] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.posts.append(
                    {
                        "path": self.path,
                        "content_type": self.headers.get("Content-Type"),
                        "body": body.decode(),
                        "status": receiver.status,
                    }
                )
                self.send_response(receiver.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format, *args):  # noqa: A002
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/services/T0TEST/B0TEST/{HOOK_SECRET}"

    def delivered(self) -> list[str]:
        """The texts of the messages that were accepted (answered 200)."""
        return [json.loads(p["body"])["text"] for p in self.posts if p["status"] == 200]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
