"""Storage: the database (engine and sessions, ORM models, Alembic migrations) and the content-addressed
evidence file store. Imports nothing else of gridpatrol."""
