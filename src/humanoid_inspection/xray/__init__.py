"""humanoid_inspection.xray."""
