"""``cl-metadata watch``: keep the users' SSH key fragments (and optionally the attributes file)
equal to what the platform serves while the machine runs.

``sources`` says when to look again (GCE's long poll, a jittered interval elsewhere),
``keeper`` fetches, compares and rewrites only on change, ``loop`` runs the schedule with its
signals, backoff and sd_notify lines, ``command`` is the subcommand's command line.
"""
