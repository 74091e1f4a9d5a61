"""Managed networks: one driver per network type behind one interface (drivers/), the
dnsmasq and nftables pieces a bridge uses, and the service that owns the rows."""
