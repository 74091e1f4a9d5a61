"""Virtual machines: QEMU driven over QMP, and the guest agent they talk to."""
