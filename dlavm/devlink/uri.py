"""Device URIs: ``sim://HOST:PORT`` names a device server (doc/socket.md); ``rtl://`` (or ``rtl://TARGET``,
or just ``rtl``) the Verilated RTL core in this process (doc/rtl.md). Read by the command line's ``--device``
(doc/cli.md, "Devices") and by the torch.compile backend's ``device`` option (``sim://`` only)."""
from __future__ import annotations

#: The one scheme the Python runtime speaks (the C++ runtime takes the same URI, doc/runtime_cpp.md).
SCHEME = "sim://"
#: What ``--device`` looks like, for help and messages.
FORM = "sim://HOST:PORT"


#: The in-process RTL core (hw_models/rtl/device.py), opened by ``dlavm.sim_device.open_rtl``.
RTL_SCHEME = "rtl://"
RTL_FORM = "rtl://[TARGET]"


class DeviceURIError(ValueError):
    """A ``--device`` value that is not ``sim://HOST:PORT``."""


def parse_device_uri(uri: str, what: str = "--device") -> tuple[str, int]:
    """``(host, port)`` of ``sim://HOST:PORT`` (``HOST`` may be ``[v6 address]``); :class:`DeviceURIError`
    naming the value (as ``what``: the option it came from) otherwise."""
    def refuse(rule: str):
        raise DeviceURIError(f"{what} {uri!r}: {rule} (expected {FORM}, e.g. sim://127.0.0.1:7000)")

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


def is_rtl_uri(uri: str) -> bool:
    """Whether ``uri`` names the in-process RTL core (``rtl``, ``rtl://`` or ``rtl://TARGET``)."""
    return uri == "rtl" or uri.startswith(RTL_SCHEME)


def parse_rtl_uri(uri: str, what: str = "--device") -> str | None:
    """The target named by ``rtl://TARGET`` (None for ``rtl`` / ``rtl://``: the artifact's);
    :class:`DeviceURIError` naming the value otherwise."""
    if not is_rtl_uri(uri):
        raise DeviceURIError(f"{what} {uri!r}: not an RTL device (expected {RTL_FORM}, e.g. rtl://tiny)")
    name = "" if uri == "rtl" else uri[len(RTL_SCHEME):]
    if name and not all(c.isalnum() or c in "._-" for c in name):
        raise DeviceURIError(f"{what} {uri!r}: {name!r} is not a target name (expected {RTL_FORM}, e.g. rtl://tiny)")
    return name or None


def connect(uri: str, expect_target: str | None = None, timeout: float = 600.0):
    """A connected :class:`~dlavm.devlink.socket_client.SocketDevice` for ``uri``; refused at the
    handshake (:class:`~dlavm.devlink.socket_client.TargetMismatchError`) when ``expect_target`` is given
    and the device implements another target."""
    from .socket_client import SocketDevice
    host, port = parse_device_uri(uri)
    return SocketDevice(host, port, timeout=timeout, expect_target=expect_target)


__all__ = ["parse_device_uri", "connect", "DeviceURIError", "SCHEME", "FORM", "RTL_SCHEME", "RTL_FORM",
           "is_rtl_uri", "parse_rtl_uri"]
