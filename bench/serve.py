"""``cl-metadata-fake-server`` with TCP_NODELAY on every accepted connection.

The fake server writes an answer's headers and its body in two sends. With Nagle's algorithm
on the server and delayed ACKs on the client, the body then waits for the ACK of the headers:
about 40 ms per answer on a reused keep-alive connection, which would charge curl (one
connection) and the agent at concurrency 1 a stall no real metadata service has. socketserver's
``disable_nagle_algorithm`` switch turns that off; everything else is the installed server.
"""

import sys

from cl_metadata.fakeserver import server
from cl_metadata.fakeserver.cli import main

server.MetadataHandler.disable_nagle_algorithm = True
sys.exit(main())
