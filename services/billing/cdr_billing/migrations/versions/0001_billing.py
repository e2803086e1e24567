"""Billing: tariffs, tariff_destinations, tariff_assignments, billing_calls, charges, adjustments.

Revision ID: 0001
"""

from alembic import op

from cdr_billing.models import metadata

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# The ledger is append-only: a charge once written never changes (a changed price is an
# adjustment row), so the database itself refuses UPDATE and DELETE on charges.
PG_IMMUTABLE = [
    """CREATE FUNCTION charges_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'charges are immutable: add an adjustment instead';
END $$""",
    """CREATE TRIGGER charges_no_update BEFORE UPDATE OR DELETE ON charges
  FOR EACH ROW EXECUTE FUNCTION charges_immutable()""",
]
SQLITE_IMMUTABLE = [
    """CREATE TRIGGER charges_no_update BEFORE UPDATE ON charges
       BEGIN SELECT RAISE(ABORT, 'charges are immutable: add an adjustment instead'); END""",
    """CREATE TRIGGER charges_no_delete BEFORE DELETE ON charges
       BEGIN SELECT RAISE(ABORT, 'charges are immutable: add an adjustment instead'); END""",
]


def upgrade() -> None:
    bind = op.get_bind()
    # This first revision creates the tables as models.py declares them (a later change to the
    # tables gets its own explicit revision).
    metadata.create_all(bind)
    for stmt in PG_IMMUTABLE if bind.dialect.name == "postgresql" else SQLITE_IMMUTABLE:
        op.execute(stmt)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS charges_no_update ON charges")
        op.execute("DROP FUNCTION IF EXISTS charges_immutable()")
    metadata.drop_all(bind)
