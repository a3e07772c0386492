"""mechscope.autoencoders."""
