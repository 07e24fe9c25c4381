"""SQL Server (placeholder until the adapter lands)."""
from .base import Adapter, register


@register
class MSSQLAdapter(Adapter):
    name = "mssql"
    dialect_names = ("mssql",)
