"""A newcomer's client: posts an example flow to a running service and prints its live events."""
