"""The daemon's primitives that every domain package uses and that know nothing of HTTP:
operations (background work clients can wait for, cancel and connect to), the event bus,
per-instance locks and the warnings the daemon raises. Below instance/, storage/, network/,
images/ and project/; server/ (HTTP) builds on them."""
