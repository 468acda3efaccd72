"""The ASGI app on its own (no HTTP server): V2 infer through its one route, so the app works under any ASGI
server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
from serve_helpers import binary_infer_body, digits_images


def test_infer_through_the_asgi_app(serve_model_path: Path, serve_reference: Any) -> None:
    import httpx

    from bninception.serve.app import create_app

    app = create_app(serve_model_path, max_batch=8, max_delay_ms=1)
    x = digits_images(3, seed=41)
    body, headers = binary_infer_body(x)

    async def exchange() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            return [await client.post("/v2/models/bninception/infer", content=body, headers=headers),
                    await client.get("/v2/models/bninception/infer"),
                    await client.post("/v2/models/resnet/infer", content=body, headers=headers),
                    await client.post("/v2/models/bninception/infer", content=b"{"),
                    await client.get("/metrics")]

    try:
        good, wrong_method, unknown, malformed, metrics = asyncio.run(exchange())
    finally:
        app.state.server.close()
    assert good.status_code == 200
    length = int(good.headers["inference-header-content-length"])
    np.testing.assert_allclose(np.frombuffer(good.content[length:], "<f4").reshape(3, 10), serve_reference(x),
                               atol=1e-5)
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"
    assert unknown.status_code == 404 and "unknown model 'resnet'" in json.loads(unknown.content)["error"]
    assert malformed.status_code == 400
    text = metrics.text
    for code in ("200", "404", "405", "400"):
        assert f'bninception_requests_total{{code="{code}",endpoint="infer"}} 1.0' in text, code
