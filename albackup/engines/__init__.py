"""Engine adapters, one module per engine, found by SQLAlchemy dialect name."""
from .base import Adapter, Snapshot, adapter_class, for_engine

__all__ = ["Adapter", "Snapshot", "adapter_class", "for_engine"]
