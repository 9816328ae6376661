"""The Landing controller: what wakes a Landing, the workers, one reconcile and its pure
decisions (plan, status, outputs), and what it writes next to a landed Secret."""
