"""Moonlander's development tooling: the local control plane (one etcd, a kube-apiserver per
cluster), its PKI, the real node, the demos and the consumers they run. A distribution of its
own (devtools/): not in the runtime wheel or the image."""
