"""humanoid_inspection.nodes."""
