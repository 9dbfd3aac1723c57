"""What the key backup (issue 20) costs a new case's data key with the local key file: the key
manager's calls a new data key makes (create its KEK, wrap the data key) timed without and with the
escrow of the wrapping that follows them (an fsync'd append to <service>.escrow). Prints the median of
each per key, with the machine's load average beside it (the machine is shared). Writes nothing."""

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from infra.keys import LocalKeyFile


async def per_key(keys: LocalKeyFile, count: int, escrow: bool, prefix: str) -> list[float]:
    times = []
    for i in range(count):
        name = f"notification/{prefix}-{i}"
        started = time.perf_counter()
        await keys.create(name)
        wrapped = await keys.wrap(name, os.urandom(32))
        if escrow:
            await keys.escrow(name, wrapped)
        times.append(time.perf_counter() - started)
    return times


async def main(count: int, folder: Path) -> None:
    keys = LocalKeyFile(folder / "notification.keys")
    await per_key(keys, 20, True, "warm")
    without = await per_key(keys, count, False, "plain")
    with_escrow = await per_key(keys, count, True, "escrowed")
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average {load}; {count} keys each; key file in {folder}")
    print(f"create + wrap:          median {statistics.median(without) * 1000:.2f} ms a key")
    print(f"create + wrap + escrow: median {statistics.median(with_escrow) * 1000:.2f} ms a key")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=300)
    parser.add_argument("--dir", type=Path, default=None, help="where the key file goes (a temporary folder)")
    args = parser.parse_args()
    if args.dir is not None:
        asyncio.run(main(args.keys, args.dir))
    else:
        with tempfile.TemporaryDirectory(prefix="bench-escrow-") as folder:
            asyncio.run(main(args.keys, Path(folder)))
