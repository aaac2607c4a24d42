"""Finding the Hearth coordinator on the local network (mDNS / DNS-SD).

A discovered address is a hint, never a credential: clients still verify the server
with TLS against their bundle's CA. See :mod:`hearth.discovery.mdns`.
"""

from hearth.discovery.mdns import SERVICE_TYPE, Advertiser, Found, discover, local_addresses

__all__ = ["SERVICE_TYPE", "Advertiser", "Found", "discover", "local_addresses"]
