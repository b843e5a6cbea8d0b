"""``--device sim://HOST:PORT``: ``run``, ``generate`` and ``profile`` on a device server instead of the
in-process simulator (doc/cli.md, "Devices").

The server is ``python -m hw_models.server`` (doc/socket.md), or anything that speaks its protocol. The
connection's handshake names the device's target; a device of another target than the artifact's is
refused before anything is written to it (:class:`dlavm.devlink.socket_client.TargetMismatchError`).
Needs no torch: a deployment host runs artifacts this way.

``--device rtl://`` (or ``rtl://TARGET``, or ``rtl``) runs on the Verilated RTL core in this process
(``dlavm.sim_device.open_rtl``; doc/rtl.md); the library is built by Verilator on first use.
"""
from __future__ import annotations

import click

from dlavm.devlink.uri import FORM, RTL_FORM, DeviceURIError, connect, is_rtl_uri, parse_device_uri, parse_rtl_uri


def device_option(fn):
    """The ``--device URI`` option (default: the in-process simulator)."""
    return click.option(
        "--device", "device", default=None, metavar=f"{FORM}|{RTL_FORM}",
        help="Run on the device server at HOST:PORT (python -m hw_models.server, doc/socket.md), or on the "
             "Verilated RTL core (rtl://, doc/rtl.md), instead of an in-process simulator; its target must be "
             "the artifact's.")(fn)


def open_device(uri: str, manifest, timeout: float = 600.0):
    """A connected :class:`~dlavm.devlink.socket_client.SocketDevice` for ``manifest``'s target (refused at
    the handshake when the device implements another), or the RTL core for ``rtl://``. Closed when the
    command ends."""
    if is_rtl_uri(uri):
        from dlavm.devlink.socket_client import TargetMismatchError
        from dlavm.sim_device import open_rtl
        target = parse_rtl_uri(uri)
        if target is not None and target != manifest.target.name:
            raise TargetMismatchError(manifest.target.name, target, uri)
        hal = open_rtl(manifest)
    else:
        hal = connect(uri, expect_target=manifest.target.name, timeout=timeout)
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        ctx.call_on_close(hal.close)
    return hal


def device_hal(uri: str | None, manifest):
    """The device of ``--device uri`` for ``manifest``, or None (the in-process simulator) without it."""
    return None if uri is None else open_device(uri, manifest)


__all__ = ["device_option", "parse_device_uri", "open_device", "device_hal", "DeviceURIError", "FORM"]
