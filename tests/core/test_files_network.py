"""core.files (atomic writes) and core.network (the one download probe)."""
import socket

import pytest

from core import network
from core.files import atomic_write, atomic_write_bytes


def test_atomic_write_replaces_whole_file_and_sets_mode(tmp_path):
    target = tmp_path / "sub" / "model.bin"
    atomic_write_bytes(target, b"old")
    atomic_write_bytes(target, b"new contents", mode=0o644)
    assert target.read_bytes() == b"new contents"
    assert target.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in target.parent.iterdir()] == ["model.bin"]  # no temporary left behind


def test_atomic_write_keeps_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "ckpt.safetensors"
    target.write_bytes(b"good")

    def half_then_fail(tmp):
        tmp.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, half_then_fail)
    assert target.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.safetensors"]


def test_probe_targets_dedupe_default_ports_and_use_a_proxy(monkeypatch):
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    urls = ["https://a.example/x", "https://a.example/y", "http://b.example:8080/z"]
    assert network.probe_targets(urls) == [("a.example", 443), ("b.example", 8080)]
    monkeypatch.setenv("https_proxy", "proxy.local:3128")
    assert network.probe_targets(["https://a.example/x"]) == [("proxy.local", 3128)]


def test_reachable_sees_a_local_listener_and_not_a_closed_port(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        assert network.reachable([f"http://127.0.0.1:{port}/"], timeout=2.0)
    # the socket is closed now: nothing listens on that port
    assert not network.reachable([f"http://127.0.0.1:{port}/"], timeout=1.0)
    assert not network.reachable([], timeout=0.5)
