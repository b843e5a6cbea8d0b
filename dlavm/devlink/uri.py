"""Device URIs: ``sim://HOST:PORT`` names a device server (doc/socket.md). Read by the command line's
``--device`` (doc/cli.md, "Devices") and by the torch.compile backend's ``device`` option."""
from __future__ import annotations

#: The one scheme the Python runtime speaks (the C++ runtime takes the same URI, doc/runtime_cpp.md).
SCHEME = "sim://"
#: What ``--device`` looks like, for help and messages.
FORM = "sim://HOST:PORT"


class DeviceURIError(ValueError):
    """A ``--device`` value that is not ``sim://HOST:PORT``."""


def parse_device_uri(uri: str) -> tuple[str, int]:
    """``(host, port)`` of ``sim://HOST:PORT`` (``HOST`` may be ``[v6 address]``); :class:`DeviceURIError`
    naming the value otherwise."""
    def refuse(rule: str):
        raise DeviceURIError(f"--device {uri!r}: {rule} (expected {FORM}, e.g. sim://127.0.0.1:7000)")

    if not uri.startswith(SCHEME):
        scheme = uri.split("://", 1)[0] + "://" if "://" in uri else None
        refuse(f"unknown scheme {scheme!r}" if scheme else "not a device URI")
    rest = uri[len(SCHEME):]
    if rest.startswith("["):
        host, sep, port = rest[1:].partition("]:")
    else:
        host, sep, port = rest.rpartition(":")
    if not sep or not host or not port:
        refuse("no HOST:PORT")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        refuse(f"port {port!r} is not an integer in [1, 65535]")
    return host, int(port)


__all__ = ["parse_device_uri", "DeviceURIError", "SCHEME", "FORM"]
