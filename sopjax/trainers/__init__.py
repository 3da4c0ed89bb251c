"""Training: the state and optimizer from a Config, the jitted step, the one epoch loop, and
the three ways to feed it (device-resident arrays, a streamed folder, several runs at once)."""
