"""Benchmark helper: a loopback server with large and hostile answers, in its own process.

Prints its origin as one JSON line and serves until its standard input closes. Each base URL
below is a root that a ``PhotaClient`` is pointed at:

- ``/ok``: ``POST /enhance`` drains the upload and answers a tiny result.
- ``/big/{mib}/{n}``: ``POST /generate`` answers ``n`` base64 images of ``mib`` MiB each, in
  256 KiB writes (random bytes behind a JPEG signature).
- ``/endless``: every answer is an endless chunked JSON body (``GET /profiles/x/status``,
  ``POST /enhance``).
- ``/bomb``: ``GET /profiles/x/status`` answers an endless gzip stream of zeros: a few KiB
  on the wire per GiB decompressed.
- ``/urls``: ``POST /enhance`` answers one download URL whose body never ends.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import zlib

from aiohttp import web

WRITE = 256 * 1024
BLOCK = base64.b64encode(os.urandom(3 * 256 * 1024))  # 1 MiB of base64, 768 KiB decoded
HEAD = base64.b64encode(b"\xff\xd8\xff\xe0" + os.urandom(3 * 256 * 1024 - 4))


async def drain(request: web.Request) -> None:
    while await request.content.readany():
        pass


async def tiny_result(request: web.Request) -> web.Response:
    await drain(request)
    image = base64.b64encode(b"\xff\xd8\xff\xe0" + bytes(60)).decode()
    return web.json_response({"known_subjects": {"counts": {}}, "images": [image]})


async def big_result(request: web.Request) -> web.StreamResponse:
    await drain(request)
    mib, n = int(request.match_info["mib"]), int(request.match_info["n"])
    blocks = mib * 4 // 3  # 1 MiB of base64 decodes to 0.75 MiB
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    try:
        await resp.write(b'{"known_subjects": {"counts": {}}, "images": [')
        for i in range(n):
            await resp.write(b'"' if i == 0 else b', "')
            for b in range(blocks):
                block = HEAD if b == 0 else BLOCK
                for start in range(0, len(block), WRITE):
                    await resp.write(block[start : start + WRITE])
            await resp.write(b'"')
        await resp.write(b'], "download_urls": []}')
        await resp.write_eof()
    except (ConnectionError, RuntimeError):
        pass  # the client refused the answer and hung up
    return resp


async def endless(request: web.Request) -> web.StreamResponse:
    await drain(request)
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    await resp.write(b'{"profile_id": "')
    chunk = b"a" * WRITE
    try:
        while True:
            await resp.write(chunk)
    except (ConnectionError, RuntimeError):
        pass
    return resp


async def bomb(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"}
    )
    await resp.prepare(request)
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(4 * 1024 * 1024)
    try:
        await resp.write(packer.compress(b'{"profile_id": "'))
        while True:
            await resp.write(packer.compress(zeros) + packer.flush(zlib.Z_SYNC_FLUSH))
    except (ConnectionError, RuntimeError):
        pass
    return resp


async def url_result(request: web.Request) -> web.Response:
    await drain(request)
    url = f"{request.url.origin()}/endless-download"
    return web.json_response(
        {"known_subjects": {"counts": {}}, "images": [], "download_urls": [url]}
    )


async def endless_download(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
    await resp.prepare(request)
    chunk = b"\xff\xd8\xff\xe0" + bytes(WRITE - 4)
    try:
        while True:
            await resp.write(chunk)
    except (ConnectionError, RuntimeError):
        pass
    return resp


def app() -> web.Application:
    application = web.Application(client_max_size=1024**3)
    application.router.add_post("/ok/enhance", tiny_result)
    application.router.add_post("/big/{mib}/{n}/generate", big_result)
    application.router.add_route("*", "/endless/{tail:.*}", endless)
    application.router.add_get("/bomb/{tail:.*}", bomb)
    application.router.add_post("/urls/enhance", url_result)
    application.router.add_get("/endless-download", endless_download)
    return application


async def main() -> None:
    runner = web.AppRunner(app())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    print(json.dumps({"origin": f"http://127.0.0.1:{runner.addresses[0][1]}"}), flush=True)
    loop = asyncio.get_running_loop()
    while await loop.run_in_executor(None, sys.stdin.readline):
        pass
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
