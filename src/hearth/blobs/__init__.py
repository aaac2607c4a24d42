"""Content-addressed blob storage: the BlobStore port and its filesystem adapter."""

from __future__ import annotations

from hearth.blobs.fs import FsBlobStore
from hearth.blobs.port import BlobInfo, BlobReader, BlobStore

__all__ = ["BlobInfo", "BlobReader", "BlobStore", "FsBlobStore"]
