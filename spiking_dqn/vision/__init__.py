"""Image classification on the spiking core."""
