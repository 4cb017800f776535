"""humanoid_inspection.perception."""
