"""systemd readiness (``Type=notify``): the sd_notify datagram, without libsystemd.

Role in the flow: ``tna run`` connects to ``$NOTIFY_SOCKET`` before it enters ``--netns``
(an abstract socket address belongs to the namespace it is looked up in, and a connected socket
keeps working after ``setns``), then the daemon sends ``READY=1`` once its first reconciliation
is done, so units ordered after ``tna.service`` start with the fast path already in place.
Outside systemd (no ``$NOTIFY_SOCKET``) every call here does nothing.
"""

from __future__ import annotations

import os
import socket

_sock: socket.socket | None = None


def connect() -> None:
    """Open the notification socket named by ``$NOTIFY_SOCKET`` and take it out of the
    environment, so that children (``nft``, the FDB refresher) cannot notify for us."""
    global _sock
    addr = os.environ.pop("NOTIFY_SOCKET", "")
    if not addr or _sock is not None:
        return
    if addr.startswith("@"):  # abstract namespace
        addr = "\0" + addr[1:]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    try:
        sock.connect(addr)
    except OSError:
        sock.close()  # systemd is gone or the path is wrong: run without readiness
        return
    _sock = sock


def notify(state: str) -> bool:
    """Send ``state`` (e.g. ``READY=1``); False when there is no one to tell."""
    if _sock is None:
        return False
    try:
        _sock.send(state.encode())
    except OSError:
        return False
    return True


def ready() -> bool:
    return notify("READY=1")
