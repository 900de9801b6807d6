"""Training: build the CNN, fit it on a folder of labelled images, publish a version."""
