"""The guest API: /dev/incus/sock inside a container, as Incus serves it (``security.guestapi``).

Each running container with the key on gets a socket of its own on the host, in a directory
bind-mounted at /dev/incus: which socket a request comes through says which instance asks, and
the peer's uid must be the container's root. It answers the instance's user.* and cloud-init.*
keys, its devices, cloud-init meta-data, its ready state, config/device events, and (with
``security.guestapi.images``) exports of public or cached images."""
