"""kopf controllers, one module per kind, sharing one World built at startup."""
