"""Moonlander: lands Kubernetes cluster credentials from one cluster into another."""

__version__ = "0.2.0"
