"""Filters: small classes with stable names and reason codes, shared by ``generate`` and ``filter``.

A filter is one module in this folder (or an installed plugin's, through the ``selfinstruct.filters``
entry points) defining a ``Filter`` subclass with a ``name`` and a ``stage``; ``build_chain``
assembles the chain in stage order (exact, quality, minhash, rouge).
"""
from __future__ import annotations

from selfinstruct.filters.base import STAGES, Filter, FilterChain, Rejection
from selfinstruct.filters.registry import REGISTRY, build_chain, filter_classes

__all__ = ["STAGES", "Filter", "FilterChain", "Rejection", "REGISTRY", "build_chain", "filter_classes"]
