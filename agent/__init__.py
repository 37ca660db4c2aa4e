"""cl-metadata: the in-guest metadata agent of a Container Linux style image.

Asks the platform (a metadata HTTP endpoint or a config drive) who this machine is and writes
the attributes file, SSH key fragments, the hostname and network units.
"""

__version__ = "0.1.0"
