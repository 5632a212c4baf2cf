"""What Ray Serve's HTTP proxy runs at start for ``colorize serve`` (``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH``
names ``pipeline.serve.proxy:setup``): the proxy's own refusals in the service's JSON shape.

The proxy parses HTTP itself (uvicorn) and refuses what it cannot parse before the service sees it,
with a plain-text 400: a request line over about 64 KB (a long ``hints`` query), or malformed
HTTP. Serve offers no setting for that answer, so ``setup`` replaces uvicorn's one method that
writes it. Light on purpose: the proxy imports this module, and nothing of the model.
"""

from __future__ import annotations

import json
from typing import List

CALLBACK = "pipeline.serve.proxy:setup"
ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
MESSAGE = (
    "the request could not be read as HTTP: a request line (path and query) over about 64 KB, or "
    "malformed; send long hints in the form's 'hints' field"
)


def setup() -> List:
    """Make uvicorn's parse-error answer JSON ``{"error": ..., "status": 400}``; no middlewares."""
    from uvicorn.protocols.http import httptools_impl

    protocols = [httptools_impl.HttpToolsProtocol]
    try:
        from uvicorn.protocols.http import h11_impl

        protocols.append(h11_impl.H11Protocol)
    except ImportError:  # uvicorn without h11: only httptools parses
        pass
    for protocol in protocols:
        protocol.send_400_response = json_400
    return []


def json_400(self, msg: str) -> None:
    """uvicorn's ``send_400_response(msg)``: the same answer (400, connection closed) as JSON."""
    body = json.dumps({"error": MESSAGE, "status": 400}).encode()
    head = (
        b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
    )
    self.transport.write(head + body)
    self.transport.close()
