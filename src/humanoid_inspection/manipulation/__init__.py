"""humanoid_inspection.manipulation."""
