"""A port bench.sh's servers can listen on: free for both TCP and UDP on 127.0.0.1.

Chosen at random below the ephemeral range (Linux's default starts at 32768), so a
client's own source port never takes it between this check and the server's bind.
"""
import random
import socket
import sys

LOW, HIGH = 20000, 32000
TRIES = 500


def free_port() -> int | None:
    for _ in range(TRIES):
        port = random.randint(LOW, HIGH)
        try:
            with socket.socket() as t, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                t.bind(("127.0.0.1", port))
                u.bind(("127.0.0.1", port))
        except OSError:
            continue
        return port
    return None


if __name__ == "__main__":
    found = free_port()
    if found is None:
        sys.exit("bench.ports: no free port")
    print(found)
