"""humanoid_inspection.cell."""
