from cdrkit.db.alembic_env import run

run()
