"""The whole simulated cell on a ROS 2 workstation: MuJoCo sim + the inspection stack.

    ros2 launch humanoid_inspection sim_mujoco.launch.py [rviz:=true]

Same nodes and parameter files as `humanoid-inspection launch` (the process launcher used where
`ros2 launch` is not installed): humanoid_inspection.launch_spec.ALL_NODES with use_sim_time.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from humanoid_inspection.launch_spec import SIM_NODE

PACKAGE = 'humanoid_inspection'


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    sim = Node(package=PACKAGE, executable=SIM_NODE.executable, name=SIM_NODE.name,
               parameters=[os.path.join(share, 'config', f) for f in SIM_NODE.param_files]
               + [{'use_sim_time': True}],
               output='screen', emulate_tty=True)
    bringup = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(share, 'launch', 'bringup.launch.py')),
        launch_arguments={'use_sim_time': 'true', 'rviz': LaunchConfiguration('rviz')}.items())
    return LaunchDescription([
        DeclareLaunchArgument('rviz', default_value='false', description='start rviz2'),
        sim,
        bringup,
    ])
