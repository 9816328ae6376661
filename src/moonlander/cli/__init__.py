"""The commands: ``moonlander run | check | mint | demo | dev-clusters | version``."""
