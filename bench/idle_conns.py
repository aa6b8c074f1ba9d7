#!/usr/bin/env python3
"""Open many keep-alive connections to 127.0.0.1:PORT and hold them idle (stdlib asyncio).

Each connection sends one `GET / HTTP/1.1` (keep-alive) and reads the whole response, so the
proxy has set up both sides and served a request before the connection goes idle. When every
connection is open (or has failed), a line `established=N` (plus `wanted=`, `failed=`) is written
to --ready-file; then the client holds the connections until it gets SIGTERM/SIGINT or --hold
seconds pass, and closes them.
"""

import argparse
import asyncio
import os
import resource
import signal
import sys

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\nUser-Agent: weir-bench-idle\r\n\r\n"


async def one(port, sem, held, timeout):
    async with sem:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port), timeout)
            writer.write(REQUEST)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if length:
                await asyncio.wait_for(reader.readexactly(length), timeout)
            if not head.startswith(b"HTTP/1.1 200"):
                writer.close()
                return False
            held.append(writer)
            return True
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError,
                asyncio.LimitOverrunError):
            return False


async def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--concurrency", type=int, default=200, help="connections being opened at once")
    ap.add_argument("--hold", type=float, default=60.0, help="seconds to hold at most")
    ap.add_argument("--timeout", type=float, default=10.0, help="per-connection setup timeout")
    ap.add_argument("--ready-file", required=True)
    a = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    sem = asyncio.Semaphore(a.concurrency)
    held = []
    results = await asyncio.gather(*(one(a.port, sem, held, a.timeout) for _ in range(a.count)))
    failed = results.count(False)
    with open(a.ready_file + ".tmp", "w") as f:
        f.write(f"wanted={a.count}\nestablished={len(held)}\nfailed={failed}\n")
    # Rename so run.sh never reads a half-written file.
    os.replace(a.ready_file + ".tmp", a.ready_file)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await asyncio.wait_for(stop.wait(), a.hold)
    except asyncio.TimeoutError:
        pass
    for w in held:
        w.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
