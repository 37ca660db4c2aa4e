"""What the agent writes: the attributes file (and its flavors), SSH key fragments, the
hostname, and the crash-safe file replacement and output-path rules they all use."""
