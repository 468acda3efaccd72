"""Uploaded images: 16-bit grayscale scaled (not clipped), decoded pixels bounded, and every decode at
once within one memory budget (issue 14, items 2 and 11)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import http.client
import json
from typing import Any

import numpy as np
import pytest
from serve_helpers import metric_value, png

from bninception.core.preprocess import Preprocess, decode_image, decode_memory, open_image
from bninception.serve.decode import MemoryBudget, OverBudget

GRAY = Preprocess(size=8, resize=8, channel_order="GRAY", mean=(0.0,), std=(1.0,))


def classify(server: Any, body: bytes) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection(server.host, server.port, timeout=60)
    try:
        conn.request("POST", "/v1/classify?top=10", body=body, headers={"Content-Type": "image/png"})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_sixteen_bit_grayscale_is_scaled_not_clipped() -> None:
    values = (np.arange(64, dtype=np.uint32).reshape(8, 8) * 1024 + 300).astype(np.uint16)
    image = decode_image(png(values))
    assert image.mode.startswith("I;16")
    np.testing.assert_array_equal(GRAY.to_pixels(image), (values >> 8).astype(np.uint8))
    rgb = Preprocess(size=8, resize=8).to_pixels(decode_image(png(values)))  # an RGB model sees grey
    np.testing.assert_array_equal(rgb, np.repeat((values >> 8).astype(np.uint8)[:, :, None], 3, axis=2))
    eight = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4  # 8-bit images are untouched
    np.testing.assert_array_equal(GRAY.to_pixels(decode_image(png(eight))), eight)


def test_sixteen_bit_upload_is_classified_as_its_eight_bit_twin(serve_tight_server: Any) -> None:
    rng = np.random.default_rng(3)
    eight = rng.integers(0, 256, (32, 32), dtype=np.uint8)
    sixteen = eight.astype(np.uint16) << 8 | rng.integers(0, 256, (32, 32), dtype=np.uint16)
    status8, answer8 = classify(serve_tight_server, png(eight))
    status16, answer16 = classify(serve_tight_server, png(sixteen))
    assert status8 == status16 == 200
    assert answer16["top"] == answer8["top"]
    saturated = classify(serve_tight_server, png(np.full((32, 32), 255, np.uint8)))[1]
    assert answer16["top"] != saturated["top"]  # what the clipped image would have given


def test_decode_memory_counts_the_decoded_and_converted_copies() -> None:
    rgba = open_image(png(np.zeros((100, 200, 4), np.uint8)))
    assert rgba.mode == "RGBA" and decode_memory(rgba, "GRAY") == 200 * 100 * (4 + 1)
    assert decode_memory(rgba, "RGB") == 200 * 100 * (4 + 4)
    grey16 = open_image(png(np.zeros((100, 200), np.uint16)))
    assert decode_memory(grey16, "GRAY") == 200 * 100 * (2 + 5 + 1)


def test_image_above_the_pixel_cap_is_413(serve_tight_server: Any) -> None:
    status, answer = classify(serve_tight_server, png(np.zeros((5000, 4001), np.uint8)))  # 20.005 MP > 20 MP
    assert status == 413 and "more than the limit of 20000000 pixels" in answer["error"]


def test_image_larger_than_the_decode_budget_is_413(serve_tight_server: Any) -> None:
    status, answer = classify(serve_tight_server, png(np.zeros((2000, 2000, 3), np.uint8)))  # 20 MB > 16 MiB
    assert status == 413 and "more than the decode budget of 16 MiB" in answer["error"]


def test_concurrent_decodes_share_the_budget(serve_tight_server: Any) -> None:
    server = serve_tight_server
    body = png(np.full((1100, 1100, 3), 90, np.uint8))  # 1.21 MP RGB -> 6.05 MB to decode for a GRAY model
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: classify(server, body), range(8)))
    assert all(status == 200 for status, _ in results), results
    assert len({json.dumps(answer["top"]) for _, answer in results}) == 1
    peak = metric_value(server.host, server.port, "bninception_decode_peak_bytes")
    assert 1100 * 1100 * 5 <= peak <= 16 << 20  # the budget was used, never overdrawn
    assert metric_value(server.host, server.port, "bninception_decode_bytes") == 0  # all given back


def test_memory_budget_waits_in_order_and_times_out() -> None:
    async def scenario() -> list[str]:
        budget = MemoryBudget(10)
        order: list[str] = []
        await budget.take(6, 1)

        async def holder(name: str, size: int) -> None:
            await budget.take(size, 5)
            order.append(name)

        first = asyncio.create_task(holder("a", 5))  # waits: 6 + 5 > 10
        second = asyncio.create_task(holder("b", 1))  # fits, but waits behind the first
        await asyncio.sleep(0.01)
        assert order == [] and budget.used == 6
        budget.give(6)
        await asyncio.gather(first, second)
        assert budget.used == 6 and budget.peak == 6
        with pytest.raises((asyncio.TimeoutError, TimeoutError)):
            await budget.take(5, 0.01)  # 6 + 5 > 10, and nobody gives back
        assert budget.used == 6 and not budget._waiters
        with pytest.raises(OverBudget):
            await budget.take(11, 1)
        return order

    assert asyncio.run(scenario()) == ["a", "b"]
