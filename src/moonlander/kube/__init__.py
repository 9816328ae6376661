"""Talking to Kubernetes: typed resources for lightkube, clients and watches of clusters."""
