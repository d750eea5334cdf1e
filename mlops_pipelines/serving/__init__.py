"""The serving API (FastAPI on uvicorn): ``create_app(settings)`` in ``app.py``, the model cache that follows alias
moves in ``model_cache.py``, request and response bodies in ``schemas.py``, errors as problem documents in
``problems.py``. It reaches ``lib/``, the catalog and the settings, never the Dagster definitions."""
