#!/usr/bin/env python3
"""Print a TCP port for `make run`'s health and metrics server: the preferred one (argv[1], default 8080)
when it is free on all addresses, else one the kernel picks."""

import socket
import sys

preferred = int(sys.argv[1]) if len(sys.argv) > 1 else 8080
with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
    try:
        sock.bind(("0.0.0.0", preferred))
    except OSError:
        sock.bind(("0.0.0.0", 0))
    print(sock.getsockname()[1])
