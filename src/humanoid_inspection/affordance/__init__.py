"""Affordances: 2D masks/points + depth -> ranked 3D grasp poses; place poses (no ROS)."""
