"""Interfaces a platform describes: assembled into one checked description (``topology``,
``netcheck``), then rendered for systemd-networkd, netplan or NetworkManager."""
