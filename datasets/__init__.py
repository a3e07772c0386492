"""mechscope.datasets."""
