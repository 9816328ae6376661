"""The local development control plane (one etcd, a kube-apiserver per cluster), its PKI, and
the demo. Not used by ``moonlander run``."""
