"""Remote control: the agent another host's controller drives, and that controller's side.

This package is a security boundary: everything a remote peer can send enters
through protocol (sans I/O: framing, authentication, limits; no socket, no clock,
no native code) and is checked by agent before a job process (agentjob) runs it.
clock estimates a peer's clock offset from message timestamps; remote is the
controller's client.
"""
