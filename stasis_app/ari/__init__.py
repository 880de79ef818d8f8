"""The stasis app's ARI edge: `AriPort` (port.py), typed events (events.py), the real adapter
(aioari_adapter.py over aioari_connection.py, imported explicitly so unit tests never load aioari) and an
in-memory fake (fake.py over fake_asterisk.py).
"""

from stasis_app.ari.events import AriEvent, ChannelInfo, decode
from stasis_app.ari.port import AriError, AriPort, AriSettings, AriUnavailable, ChannelGone

__all__ = [
    "AriError",
    "AriEvent",
    "AriPort",
    "AriSettings",
    "AriUnavailable",
    "ChannelGone",
    "ChannelInfo",
    "decode",
]
