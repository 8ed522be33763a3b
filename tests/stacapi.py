"""A real STAC API on loopback for the tests: `rustac serve` (rustac from PyPI) with its in-process
memory backend, loaded with the Collections and ItemCollections the test writes. pystac-client
searches it as it would Earth Search or Planetary Computer (/search with collections, bbox and
datetime, paged)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Optional


class StacApi:
    """`with StacApi([collection.json, items.json]) as api:` serves them at `api.url`."""

    def __init__(self, hrefs: list[Path]) -> None:
        self.hrefs = hrefs
        self.url = ""
        self.process: Optional[subprocess.Popen] = None

    def __enter__(self) -> "StacApi":
        rustac = shutil.which("rustac", path=str(Path(sys.executable).parent)) or shutil.which("rustac")
        if rustac is None:
            raise RuntimeError("rustac is not installed (the test extra has it)")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen([rustac, "serve", *map(str, self.hrefs), "--addr", f"127.0.0.1:{port}"],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.url}/collections", timeout=2).close()
                return self
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    output = self.process.stdout.read().decode() if self.process.poll() is not None else ""
                    self.__exit__()
                    raise RuntimeError(f"rustac serve did not start: {output}") from None
                time.sleep(0.2)

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None
