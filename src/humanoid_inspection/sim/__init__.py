"""humanoid_inspection.sim: the MuJoCo world of the cell and the virtual X-ray station (no ROS).

Entry point: `factory.load_simulation()` -> `simulation.Simulation`; `runner.RealTimeRunner`
steps it at real time and renders the head camera; see docs/simulation.md.
"""
