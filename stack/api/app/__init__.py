"""Iris classifier HTTP API."""
