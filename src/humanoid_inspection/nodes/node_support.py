"""What every node of the stack shares: typed parameter declaration, start-up checks, main().

- declare_typed_parameters(): declares each parameter with a descriptor (description, type,
  ranges); rclpy then refuses an override of the wrong type at start-up, and this module turns
  that into one clear line naming the parameter.
- reject_unknown_parameters(): a parameter file that sets a name the node does not declare
  (a typo) fails the start-up with the name, instead of being silently ignored.
- run_node(): the ros2/examples main() shape: a multi-threaded executor (HandOffExecutor,
  nodes/executor.py: rclpy's MultiThreadedExecutor without its busy wait), KeyboardInterrupt and
  ExternalShutdownException handled, destroy_node() and try_shutdown() always. A SIGINT that
  shuts the context down while an executor thread builds its next wait set makes rclpy raise
  RCLError('failed to initialize wait set: context is not valid'); once the context is shut
  down that is the requested stop, not a failure, so the node exits 0.
"""

import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional

import rclpy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node

from humanoid_inspection.nodes.executor import HandOffExecutor

# Parameters rclpy or the launch tooling set on every node.
_BUILTIN_PARAMETERS = {'use_sim_time', 'start_type_description_service', 'qos_overrides'}


class StartupError(RuntimeError):
    """A node cannot start; the message names what is wrong (parameter, file, ...)."""


@dataclass(frozen=True)
class Param:
    """One declared parameter: name, default (its type is the parameter's type), meaning."""

    name: str
    default: Any
    description: str
    min_value: Optional[float] = None
    max_value: Optional[float] = None


def _descriptor(p: Param) -> ParameterDescriptor:
    d = ParameterDescriptor(description=p.description)
    if p.min_value is not None and p.max_value is not None:
        if isinstance(p.default, bool):
            pass
        elif isinstance(p.default, int):
            d.integer_range = [IntegerRange(
                from_value=int(p.min_value), to_value=int(p.max_value), step=0)]
        elif isinstance(p.default, float):
            d.floating_point_range = [FloatingPointRange(
                from_value=float(p.min_value), to_value=float(p.max_value), step=0.0)]
    return d


def declare_typed_parameters(node: Node, params: Iterable[Param]) -> dict:
    """Declare params on node; return {name: value}. Raises StartupError naming a bad one."""
    values = {}
    for p in params:
        try:
            node.declare_parameter(p.name, p.default, _descriptor(p))
        except Exception as exc:  # InvalidParameterTypeException, InvalidParameterValueException
            raise StartupError(
                f"parameter '{p.name}' of node '{node.get_name()}': {exc} "
                f'(expected {type(p.default).__name__}, default {p.default!r})') from exc
        values[p.name] = node.get_parameter(p.name).value
    return values


def reject_unknown_parameters(node: Node) -> None:
    """Raise StartupError if a parameter override names a parameter the node never declared."""
    overrides = getattr(node, '_parameter_overrides', {}) or {}
    unknown = sorted(
        name for name in overrides
        if not node.has_parameter(name) and name.split('.')[0] not in _BUILTIN_PARAMETERS)
    if unknown:
        raise StartupError(
            f"node '{node.get_name()}' got unknown parameter(s) {', '.join(unknown)} "
            '(typo in the parameter file?)')


def run_node(factory: Callable[[], Node], args=None, threads: int = 4) -> int:
    """Create the node with factory and spin it until shutdown; return a process exit code."""
    try:
        rclpy.init(args=args)
    except Exception as exc:  # e.g. an unreadable --params-file
        print(f'[FATAL] ROS initialisation failed: {exc}', file=sys.stderr)
        return 2
    node = None
    code = 0
    try:
        node = factory()
        executor = HandOffExecutor(num_threads=threads)
        executor.add_node(node)
        executor.spin()
    except StartupError as exc:
        print(f'[FATAL] {exc}', file=sys.stderr)
        code = 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception as exc:  # noqa: BLE001 - a stop racing the executor, or a real crash
        if rclpy.ok():
            raise
        print(f'[INFO] stopped while spinning ({type(exc).__name__}: {exc})', file=sys.stderr)
    finally:
        if node is not None:
            shutdown = getattr(node, 'shutdown', None)
            if callable(shutdown):
                shutdown()
            node.destroy_node()
        rclpy.try_shutdown()
    return code
