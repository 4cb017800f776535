"""The inspection cell in Gazebo (gz sim Harmonic) on a ROS 2 workstation.

    ros2 launch humanoid_inspection sim_gazebo.launch.py [rviz:=true] [headless:=false]
        [perception_backend:=classical|vlm] [vlm_model_path:=/path/to/checkpoint]

Needs ros_gz_sim, ros_gz_bridge, gz_ros2_control, ros2_controllers (joint_trajectory_controller),
robot_state_publisher and xacro (apt: ros-<distro>-ros-gz, ros-<distro>-gz-ros2-control,
ros-<distro>-ros2-controllers). Starts, in order:
  1. gz sim with worlds/inspection_cell.sdf (generated from config/cell.yaml);
  2. robot_state_publisher with robot_description = xacro urdf/humanoid.urdf.xacro
     use_gazebo:=true (fixed-base: base_link welded to world at robot.base_xyz of cell.yaml);
  3. ros_gz_sim create -topic robot_description (spawns the humanoid);
  4. ros_gz_bridge parameter_bridge with config/gz_bridge.yaml (clock, joint_states, head camera);
  5. once spawning has exited: the controller spawners of config/controllers.yaml (the
     controller_manager runs inside gz through gz_ros2_control);
  6. the application nodes of humanoid_inspection.launch_spec.APP_NODES with their
     config/<node>.yaml and use_sim_time:=true; rviz2 with config/inspection.rviz if rviz:=true.
Not provided by Gazebo: the virtual X-ray station (srv xray/acquire, xray/image_raw) of the
MuJoCo sim node; on a Gazebo-only setup the X-ray station is the real one or absent.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, RegisterEventHandler
from launch.conditions import IfCondition
from launch.event_handlers import OnProcessExit
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import Command, LaunchConfiguration, PythonExpression
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from humanoid_inspection.launch_spec import APP_NODES

PACKAGE = 'humanoid_inspection'
ROBOT_NAME = 'humanoid'
# Controllers spawned after the robot exists (names: CONTRACTS.md, config/controllers.yaml).
# joint_state_broadcaster is not spawned: /joint_states comes from gz through the bridge.
CONTROLLERS = (
    'legs_controller', 'waist_controller', 'head_controller', 'left_arm_controller',
    'right_arm_controller', 'left_gripper_controller', 'right_gripper_controller',
)


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    config = os.path.join(share, 'config')
    xacro_file = os.path.join(share, 'urdf', 'humanoid.urdf.xacro')
    world_file = os.path.join(share, 'worlds', 'inspection_cell.sdf')
    controllers_file = os.path.join(config, 'controllers.yaml')
    bridge_file = os.path.join(config, 'gz_bridge.yaml')
    rviz_file = os.path.join(config, 'inspection.rviz')

    robot_description = ParameterValue(
        Command(['xacro ', xacro_file, ' use_gazebo:=true fixed_base:=true',
                 ' controllers_file:=', controllers_file]),
        value_type=str)
    sim_time = {'use_sim_time': True}

    gz_sim = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(
            get_package_share_directory('ros_gz_sim'), 'launch/gz_sim.launch.py')),
        launch_arguments={
            'gz_args': PythonExpression([
                "('-r -s ' if '", LaunchConfiguration('headless'),
                "' == 'true' else '-r ') + '", world_file, "'"]),
            'on_exit_shutdown': 'true',
        }.items())

    robot_state_publisher = Node(
        package='robot_state_publisher', executable='robot_state_publisher',
        parameters=[{'robot_description': robot_description}, sim_time], output='screen')

    spawn = Node(
        package='ros_gz_sim', executable='create', output='screen',
        arguments=['-topic', 'robot_description', '-name', ROBOT_NAME, '-allow_renaming',
                   'false'])

    bridge = Node(
        package='ros_gz_bridge', executable='parameter_bridge', name='gz_bridge',
        parameters=[{'config_file': bridge_file}, sim_time], output='screen')

    spawners = [
        Node(package='controller_manager', executable='spawner', output='screen',
             arguments=[name, '--controller-manager', '/controller_manager',
                        '--param-file', controllers_file])
        for name in CONTROLLERS
    ]
    start_controllers = RegisterEventHandler(
        OnProcessExit(target_action=spawn, on_exit=spawners))

    overrides = {
        'perception': {'backend': LaunchConfiguration('perception_backend'),
                       'vlm_model_path': LaunchConfiguration('vlm_model_path')},
    }
    app_nodes = []
    for spec in APP_NODES:
        params = [os.path.join(config, name) for name in spec.param_files]
        params.append({**sim_time, **overrides.get(spec.name, {})})
        app_nodes.append(Node(package=PACKAGE, executable=spec.executable, name=spec.name,
                              parameters=params, output='screen', emulate_tty=True))

    rviz = Node(package='rviz2', executable='rviz2', name='rviz2', arguments=['-d', rviz_file],
                parameters=[sim_time], condition=IfCondition(LaunchConfiguration('rviz')))

    return LaunchDescription([
        DeclareLaunchArgument('rviz', default_value='true', description='start rviz2'),
        DeclareLaunchArgument('headless', default_value='false',
                              description='run gz sim server only (no GUI)'),
        DeclareLaunchArgument('perception_backend', default_value='classical',
                              description='classical | vlm'),
        DeclareLaunchArgument('vlm_model_path', default_value='',
                              description='local Qwen2.5-VL-family checkpoint (vlm backend)'),
        gz_sim,
        robot_state_publisher,
        spawn,
        bridge,
        start_controllers,
        *app_nodes,
        rviz,
    ])
