"""One router per resource: compute, online, offline, stores, health."""
