"""mechscope.activation_server."""
