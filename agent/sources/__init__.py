"""Where metadata comes from: the bounded HTTP client and its run deadline, config drives and
their layouts (OpenStack ``config-2``, NoCloud ``cidata``), and DHCP lease files."""
