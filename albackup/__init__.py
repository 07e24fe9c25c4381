"""albackup: logical backups of relational databases through SQLAlchemy reflection."""

__version__ = "0.1.0"
