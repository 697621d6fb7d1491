"""One network probe for every download: can a TCP connection to a host open, within a deadline?

The app works offline, so every loader that might download (torchvision sets, open_clip weights, Hugging Face
models) asks here first and fails fast with a sentence instead of waiting on a socket. The probe runs in a daemon
thread joined with a deadline, because a DNS lookup with no network can block far longer than a socket timeout
(the resolver retries on its own clock). Behind a proxy the proxy is what must answer.
"""
from __future__ import annotations

import os
import socket
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterable

PROBE_TIMEOUT = 3.0  # seconds the whole probe (DNS + connect) may take before a download is declared impossible


def probe_targets(urls: Iterable[str]) -> list[tuple[str, int]]:
    """The distinct (host, port) pairs that must answer for ``urls`` to download (the proxy's, when one is set)."""
    proxies = urllib.request.getproxies()
    targets: list[tuple[str, int]] = []
    for url in urls:
        parsed = urllib.parse.urlsplit(url)
        proxy = proxies.get(parsed.scheme)
        if proxy:
            parsed = urllib.parse.urlsplit(proxy if "//" in proxy else "http://" + proxy)
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        if parsed.hostname and (parsed.hostname, port) not in targets:
            targets.append((parsed.hostname, port))
    return targets


def reachable(urls: Iterable[str], timeout: float | None = None) -> bool:
    """True when a TCP connection to the host of any of ``urls`` opens within ``timeout`` seconds in total."""
    targets = probe_targets(urls)
    timeout = PROBE_TIMEOUT if timeout is None else float(timeout)
    ok: list[bool] = []

    def probe() -> None:
        for host, port in targets:
            try:
                with socket.create_connection((host, port), timeout=timeout):
                    ok.append(True)
                    return
            except OSError:
                continue

    t = threading.Thread(target=probe, name="cp-network-probe", daemon=True)
    t.start()
    t.join(timeout)
    return bool(ok)


def hub_endpoint() -> str:
    """The Hugging Face endpoint open_clip and sentence-transformers would download from."""
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")
