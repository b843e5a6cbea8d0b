"""The link between a host and a device: the HAL interface every device
implements (``hal.py``), the device socket protocol (``protocol.py``,
doc/socket.md) and its Python client (``socket_client.py``).

Both the runtime (``dlavm.runtime``) and the simulator (``hw_models``) build
on this package, so neither imports the other. It needs only the standard
library, numpy and ``dlavm.target``.
"""
from dlavm.devlink.hal import DeviceHAL, HALError

__all__ = ["DeviceHAL", "HALError"]
