"""Helpers of scripts/bench: albackup beside pg_dump/pg_restore and mariadb-dump/mariadb."""
