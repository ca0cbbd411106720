"""Corpora, audio validation and manifests."""
