"""``autorec serve``: a saved model behind an HTTP API (FastAPI + uvicorn, the ``serve`` extra).

:func:`create_app` builds the application; :mod:`autorec.serve.engine` holds what it computes
(snapshots of a loaded model, the atomic swap, batching); :mod:`autorec.serve.schemas` the JSON
bodies. docs/serving.md describes the endpoints, errors, reloads and measured speed.
"""

from autorec.serve.app import create_app

__all__ = ["create_app"]
