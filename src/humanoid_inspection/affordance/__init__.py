"""humanoid_inspection.affordance."""
