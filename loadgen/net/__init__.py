"""The net job (job), its UDP sockets (endpoints) and the receiver/echo server of `loadgen serve` (serve)."""
