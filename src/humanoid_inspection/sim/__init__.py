"""humanoid_inspection.sim."""
