"""Moving instances and volumes between servers with Incus's migration protocol: the control
messages (``wire``), websockets as byte streams (``channel``), rsync and block transfers over
them (``transfer``), and the two ends of a move (``source``, ``sink``)."""
