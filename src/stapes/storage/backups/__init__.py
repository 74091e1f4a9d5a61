"""Backups in Incus's tarball format: ``backup/index.yaml`` then the volume trees (or, optimized,
the driver's send streams), compressed with a chosen algorithm."""
