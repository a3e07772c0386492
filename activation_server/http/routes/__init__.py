"""One FastAPI router per resource: health, metadata, debugger, nodes, datasets."""
