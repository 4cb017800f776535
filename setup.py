"""ament_python package humanoid_inspection (code under src/)."""

import glob
import os

from setuptools import find_packages, setup

PACKAGE = 'humanoid_inspection'


def share(folder, pattern='*'):
    """Data files of one folder, installed under share/<package>/<folder>."""
    files = [f for f in glob.glob(os.path.join(folder, pattern)) if os.path.isfile(f)]
    return (os.path.join('share', PACKAGE, folder), files)


NODES = {
    'perception': 'perception_node',
    'affordance': 'affordance_node',
    'xray_inspection': 'xray_inspection_node',
    'manipulation': 'manipulation_node',
    'cell_manager': 'cell_manager_node',
    'mujoco_sim': 'mujoco_sim_node',
}

setup(
    name=PACKAGE,
    version='0.1.0',
    package_dir={'': 'src'},
    packages=find_packages('src'),
    include_package_data=True,
    package_data={PACKAGE: ['xray/models/*.pt', 'report/*.html']},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE]),
        ('share/' + PACKAGE, ['package.xml']),
        share('launch', '*.py'),
        share('config', '*.yaml'),
        share('config', '*.rviz'),
        share('config', '*.xml'),
        share('urdf', '*.xacro'),
        share('worlds', '*.sdf'),
    ],
    install_requires=['setuptools'],
    zip_safe=False,
    maintainer='humanoid_inspection developers',
    maintainer_email='dev@humanoid-inspection.invalid',
    description='Humanoid X-ray inspection cell for die-cast parts (ROS 2).',
    license='Apache-2.0',
    entry_points={
        'console_scripts': [
            f'{name}=humanoid_inspection.nodes.{module}:main' for name, module in NODES.items()
        ] + ['humanoid-inspection=humanoid_inspection.cli:main'],
    },
)
