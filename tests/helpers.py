"""What several test modules share (no test module imports another): relative errors,
losses with their gradients, a check that an import pulls in torch, headless Chromium,
the environment of the subprocesses tests start, and waiting on the shared Ray."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


# --------------------------------------------------------------------------- numbers


def rel_err(a: torch.Tensor | dict, b: torch.Tensor | dict) -> float:
    """|a − b| / |b| (the norm of the difference alone where b is exactly zero); for two
    dicts of tensors with the same keys, the largest over the keys."""
    if isinstance(a, dict) or isinstance(b, dict):
        assert isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys()
        return max(rel_err(a[k], b[k]) for k in a)
    if not b.norm():
        return float((a - b).norm())  # both should be exactly zero
    return float((a - b).norm() / b.norm())


def value_and_grads(model, fn):
    """fn() -> scalar loss; returns (loss, {name: grad}) with fresh gradients."""
    model.zero_grad(set_to_none=True)
    L = fn()
    L.backward()
    # a parameter the graph never reached (W at tau = 1 under teacher forcing) has
    # gradient None, i.e. zero
    grads = {
        n: torch.zeros_like(p) if p.grad is None else p.grad.detach().clone()
        for n, p in model.named_parameters()
    }
    model.zero_grad(set_to_none=True)
    return L.detach(), grads


# --------------------------------------------------------------------------- processes


def loaded(code: str, names: tuple[str, ...]) -> list[str]:
    """Which of the modules ``names`` running ``code`` in a fresh interpreter loads."""
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            f"{code}\nimport sys\nprint(*[n for n in {names!r} if n in sys.modules])",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.split()


def imports_torch(code: str) -> bool:
    """Whether running ``code`` in a fresh interpreter imports torch."""
    return loaded(code, ("torch",)) == ["torch"]


def subprocess_env(**extra) -> dict:
    """The environment of a subprocess a test starts: the venv's commands first, tests/
    and the checkout importable, no RAY_ADDRESS (so it never joins someone's cluster)."""
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(ROOT)])
    env.update(extra)
    return env


# --------------------------------------------------------------------------- the browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NO_CHROMIUM = (
    "needs headless Chromium: `apt-get install chromium` as root on Debian/Ubuntu "
    "(CI installs it in .ci/run and fails without it)"
)
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-dev-shm-usage",  # a container's /dev/shm may be 64 MB
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PROBE = (
    "<script>window.addEventListener('load', () => { const im = [...document.images];"
    " document.body.setAttribute('data-images', im.filter(i => i.complete &&"
    " i.naturalWidth > 0).length + '/' + im.length); });</script>"
)


def images_loaded(page: Path) -> str:
    """Render ``page`` (with a probe script) in headless Chromium: 'loaded/total' images."""
    probe = page.with_name("probe.html")
    probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    with tempfile.TemporaryDirectory() as profile:
        dom = subprocess.run(
            [
                CHROMIUM,
                *CHROMIUM_FLAGS,
                "--virtual-time-budget=5000",
                "--dump-dom",
                f"--user-data-dir={profile}",
                probe.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=90,
        ).stdout
    probe.unlink()
    marker = 'data-images="'
    assert marker in dom, "the page did not finish loading in Chromium"
    return dom.split(marker, 1)[1].split('"', 1)[0]


# What a reader sees at a laptop's width: laid out at LAPTOP (css px), then measured.
LAPTOP = (1366, 768)
SEEN = (
    "<script>window.addEventListener('load', () => {"
    " const box = e => { const r = e.getBoundingClientRect();"
    " return {top: r.top, bottom: r.bottom, left: r.left, right: r.right, width: r.width,"
    " height: r.height}; };"
    " const t = document.querySelector('.tally');"
    " const seen = {vw: window.innerWidth, vh: window.innerHeight,"
    " scroll_width: document.documentElement.scrollWidth, tally: t ? box(t) : null,"
    " images: [...document.images].map(i => ({src: i.getAttribute('src').slice(0, 60),"
    " loaded: i.complete && i.naturalWidth > 0,"
    " visible: getComputedStyle(i).visibility !== 'hidden' && i.offsetParent !== null,"
    " ...box(i)}))};"
    " document.body.setAttribute('data-seen', btoa(unescape(encodeURIComponent("
    "JSON.stringify(seen))))); });</script>"
)


def _chromium(url: str, *args: str) -> str:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [
                CHROMIUM,
                *CHROMIUM_FLAGS,
                "--hide-scrollbars",
                f"--window-size={LAPTOP[0]},{LAPTOP[1]}",
                "--virtual-time-budget=5000",
                f"--user-data-dir={profile}",
                *args,
                url,
            ],
            capture_output=True,
            text=True,
            timeout=90,
        ).stdout


def what_a_reader_sees(page: Path) -> dict:
    """Render ``page`` in headless Chromium at LAPTOP and measure it: the viewport, the
    page's scroll width, the tally's box and every image's box, load state and visibility
    (CSS px, relative to the first screen)."""
    import base64
    import json

    probe = page.with_name("seen-probe.html")
    probe.write_text(page.read_text().replace("</body>", SEEN + "</body>"))
    try:
        dom = _chromium(probe.as_uri(), "--dump-dom")
    finally:
        probe.unlink()
    marker = 'data-seen="'
    assert marker in dom, "the page did not finish loading in Chromium"
    return json.loads(base64.b64decode(dom.split(marker, 1)[1].split('"', 1)[0]))


def screenshot(page: Path, png: Path) -> Path:
    """The first screen of ``page`` at LAPTOP, as Chromium draws it."""
    _chromium(page.as_uri(), f"--screenshot={png}")
    assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG", "Chromium wrote no screenshot"
    return png


# --------------------------------------------------------------------------- the shared Ray


def live_placement_groups() -> dict[str, str]:
    """Placement-group id -> name of every group Ray has not removed."""
    from ray.util.placement_group import placement_group_table

    return {k: v["name"] for k, v in placement_group_table().items() if v["state"] != "REMOVED"}


def wait_cpus_free(ray, seconds: float, why: str) -> None:
    """Wait until every CPU of the Ray session is free; fail after ``seconds`` saying
    ``why``, what is available and which placement groups are still there."""
    deadline = time.monotonic() + seconds
    while ray.available_resources().get("CPU", 0) < ray.cluster_resources()["CPU"]:
        if time.monotonic() > deadline:
            pytest.fail(
                f"{why}: available {ray.available_resources()}; "
                f"placement groups not removed: {live_placement_groups()}"
            )
        time.sleep(0.01)


# --------------------------------------------------------------------------- processes and sockets
# (cluster: listing a process tree's listening sockets, shared by the loopback tests)


def process_tree(root: int) -> set[int]:
    """``root`` and every process below it (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    seen, todo = set(), [root]
    while todo:
        pid = todo.pop()
        seen.add(pid)
        todo += children.get(pid, [])
    return seen


def _hex_ip(text: str) -> str:
    """/proc/net/tcp{,6}'s address (little-endian 32-bit words) as an IP string."""
    import ipaddress

    raw = bytes.fromhex(text)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    ip = ipaddress.ip_address(words)
    if ip.version == 6 and ip.ipv4_mapped:
        return str(ip.ipv4_mapped)
    return str(ip)


def listeners(pids: set[int]) -> set[tuple[str, int, str]]:
    """(address, port, process name) of every TCP socket the processes ``pids`` listen on."""
    owner = {}
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            with open(f"/proc/{pid}/comm") as f:
                name = f.read().strip()
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                owner[link[8:-1]] = name
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in owner:  # 0A: LISTEN
                ip, port = fields[1].split(":")
                found.add((_hex_ip(ip), int(port, 16), owner[fields[9]]))
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` is a running (not zombie) process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


# ------------------------------------------------------------------ a Ray cluster of processes
# (cluster: `ray start` nodes on this host with token authentication, for the slow tier)


def free_ports(n: int) -> list[int]:
    """``n`` free ports between Ray's worker ports (10002-19999) and the kernel's ephemeral
    range (a port from ``bind(0)`` could be taken by Ray's own processes meanwhile)."""
    import random
    import socket

    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low = int(f.read().split()[0])
    if low < 20000 + 4 * n:
        pytest.skip(f"the kernel's ephemeral ports start at {low}: no safe range for Ray's")
    ports: list[int] = []
    for port in random.Random().sample(range(20000, low), 4 * n):
        with socket.socket() as s:
            try:
                s.bind(("", port))
            except OSError:
                continue
        ports.append(port)
        if len(ports) == n:
            return ports
    raise RuntimeError("no free ports below the ephemeral range")


def node_ports(head: bool) -> list[str]:
    """The `ray start` flags that pin every fixed port a node would take, to free ones."""
    names = [
        "dashboard-agent-listen-port",
        "dashboard-agent-grpc-port",
        "metrics-export-port",
        "runtime-env-agent-port",
    ]
    if head:
        names += ["ray-client-server-port", "dashboard-port"]
    return [f"--{name}={port}" for name, port in zip(names, free_ports(len(names)))]


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and every process below it (children first looked up)."""
    import signal

    for p in sorted(process_tree(pid), reverse=True):
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass


def temp_processes(temp: str) -> set[int]:
    """The processes whose command line names ``temp`` (a node's --temp-dir), and theirs."""
    found: set[int] = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if temp.encode() in f.read():
                        found |= process_tree(int(entry))
            except OSError:
                continue
    return found
