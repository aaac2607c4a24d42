"""The Python client SDK: :class:`AsyncClient` and its blocking twin :class:`Client`.

Both find the coordinator with :func:`hearth.config.resolve_endpoint` and raise the
classes of :mod:`hearth.errors`; connection failures are
:class:`hearth.errors.Unavailable`.
"""

from __future__ import annotations

from hearth.client.asyncclient import AsyncClient
from hearth.client.http import error_for
from hearth.client.sync import Client

__all__ = ["AsyncClient", "Client", "error_for"]
