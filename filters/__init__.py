"""Filters: small classes with stable names and reason codes, shared by ``generate`` and ``filter``.

The registry maps each filter's ``name`` to its class; ``build_chain`` assembles the default chain in
stage order (exact, quality, minhash, rouge). Adding a filter is one new module that defines a
``Filter`` subclass and decorates it with ``@register``.
"""
from __future__ import annotations

from selfinstruct.filters.base import STAGES, Filter, FilterChain, Rejection
from selfinstruct.filters.registry import REGISTRY, build_chain, register

__all__ = ["STAGES", "Filter", "FilterChain", "Rejection", "REGISTRY", "build_chain", "register"]
