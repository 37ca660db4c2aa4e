"""Untrusted documents turned into values: the bounded JSON/YAML parser, typed field access, and
the text, key-index and item-tree helpers every provider shares."""
