"""``cl-metadata-import-image``: a distributor's first step, before any boot.

Downloads a release image from its channel (``version.txt``, the image, its detached ``.sig``),
verifies the signature with ``gpgv`` against the keyring the user gives, decompresses it and
writes it with a JSON of labels ready for an image service. Nothing here is on the boot path:
the agent never imports this package.

``channel`` reads the channel's files as data, ``download`` fetches them (bounded like the
agent's HTTP client), ``signature`` runs ``gpgv``, ``unpack`` decompresses, ``cli`` is the
command; ``errors`` holds the one error type they raise.
"""
