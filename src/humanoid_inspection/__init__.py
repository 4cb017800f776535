"""humanoid_inspection: ROS 2 stack for a humanoid X-ray inspection cell of die-cast parts."""
