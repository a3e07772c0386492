"""mechscope.inference."""
