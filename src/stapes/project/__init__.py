"""Projects: their config keys, the service behind /1.0/projects, and the limits and
restrictions they put on the instances inside them."""
