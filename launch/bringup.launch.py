"""Bring up the inspection stack on the robot (or against any sim that provides the sensors).

    ros2 launch humanoid_inspection bringup.launch.py [use_sim_time:=false] [rviz:=true]
        [perception_backend:=classical|vlm] [vlm_model_path:=/path/to/MiMo-Embodied-7B]

Starts robot_state_publisher (robot_description from urdf/humanoid.urdf.xacro) and the
application nodes listed in humanoid_inspection.launch_spec.APP_NODES, each with its
config/<node>.yaml. The robot's drivers provide joint_states, the head camera topics, the
joint_trajectory controllers and the xray/acquire service of the X-ray station.
DDS discovery range is taken from the environment (ROS_AUTOMATIC_DISCOVERY_RANGE), see README.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import Command, LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from humanoid_inspection.launch_spec import APP_NODES

PACKAGE = 'humanoid_inspection'


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    use_sim_time = LaunchConfiguration('use_sim_time')
    xacro_file = os.path.join(share, 'urdf', 'humanoid.urdf.xacro')
    robot_description = ParameterValue(
        Command(['xacro ', xacro_file, ' use_gazebo:=false']), value_type=str)

    actions = [
        DeclareLaunchArgument('use_sim_time', default_value='false',
                              description='use /clock from a simulator'),
        DeclareLaunchArgument('rviz', default_value='false', description='start rviz2'),
        DeclareLaunchArgument('perception_backend', default_value='classical',
                              description='classical | vlm'),
        DeclareLaunchArgument('vlm_model_path', default_value='',
                              description='local Qwen2.5-VL-family checkpoint (vlm backend)'),
        Node(package='robot_state_publisher', executable='robot_state_publisher',
             parameters=[{'robot_description': robot_description,
                          'use_sim_time': use_sim_time}],
             output='screen'),
    ]
    overrides = {
        'perception': {'backend': LaunchConfiguration('perception_backend'),
                       'vlm_model_path': LaunchConfiguration('vlm_model_path')},
    }
    for spec in APP_NODES:
        params = [os.path.join(share, 'config', f) for f in spec.param_files]
        params.append({'use_sim_time': use_sim_time, **overrides.get(spec.name, {})})
        actions.append(Node(package=PACKAGE, executable=spec.executable, name=spec.name,
                            parameters=params, output='screen', emulate_tty=True))
    actions.append(Node(package='rviz2', executable='rviz2', name='rviz2',
                        arguments=['-d', os.path.join(share, 'config', 'inspection.rviz')],
                        parameters=[{'use_sim_time': use_sim_time}],
                        condition=IfCondition(LaunchConfiguration('rviz'))))
    return LaunchDescription(actions)
