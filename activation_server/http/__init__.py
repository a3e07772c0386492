"""The activation server: the engine's computations over HTTP (FastAPI), with limits, a bounded
compute pool, coalescing of concurrent node-table requests, compute processes, bearer-token
security and the built neuron viewer. Imports from the engine, never the other way round."""
