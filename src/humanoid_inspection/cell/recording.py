"""Write ROS 2 messages to an MCAP file that Foxglove and `ros2 bag` open (no rclpy here).

The recorder (nodes/cell_demo_client.py) hands over already-serialised CDR messages (rclpy
raw subscriptions) with their type names; this module builds each type's ``ros2msg`` schema
text the way rosbag2 does (the .msg file, then every nested type after a line of 80 '=' and
``MSG: pkg/Name``), read from the .msg/.action files of the installed interface packages
(``share/<pkg>/msg`` under AMENT_PREFIX_PATH), and writes them with the ``ros2`` profile.
"""

import os
import re
import time
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

from mcap.writer import CompressionType, Writer

PRIMITIVES = {'bool', 'byte', 'char', 'float32', 'float64', 'int8', 'uint8', 'int16', 'uint16',
              'int32', 'uint32', 'int64', 'uint64', 'string', 'wstring'}
_SEPARATOR = '=' * 80


class DefinitionError(LookupError):
    """A message definition cannot be found or parsed; the message names the type."""


def share_dirs() -> List[Path]:
    """share/ folders of every prefix in AMENT_PREFIX_PATH."""
    prefixes = [p for p in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if p]
    return [Path(p) / 'share' for p in prefixes if (Path(p) / 'share').is_dir()]


def _split_type(type_name: str) -> Tuple[str, str, str]:
    parts = type_name.split('/')
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    if len(parts) == 2:
        return parts[0], 'msg', parts[1]
    raise DefinitionError(f"'{type_name}' is not a ROS type name (pkg/msg/Name)")


def _find(pkg: str, sub: str, name: str, ext: str, dirs: Iterable[Path]) -> Path:
    for share in dirs:
        path = share / pkg / sub / f'{name}.{ext}'
        if path.is_file():
            return path
    raise DefinitionError(f'no {pkg}/{sub}/{name}.{ext} in {[str(d) for d in dirs]}')


def _action_section(pkg: str, action: str, index: int, dirs) -> str:
    text = _find(pkg, 'action', action, 'action', dirs).read_text()
    sections = re.split(r'^---\s*$', text, flags=re.MULTILINE)
    if len(sections) != 3:
        raise DefinitionError(f'{pkg}/action/{action}.action does not have 3 sections')
    return sections[index].strip('\n') + '\n'


def raw_definition(type_name: str, dirs: Optional[List[Path]] = None) -> str:
    """The text of one type (no nested types). Actions' generated types are synthesised."""
    dirs = share_dirs() if dirs is None else dirs
    pkg, sub, name = _split_type(type_name)
    if sub == 'msg':
        return _find(pkg, 'msg', name, 'msg', dirs).read_text()
    if sub == 'action':
        for suffix, index in (('_Goal', 0), ('_Result', 1), ('_Feedback', 2)):
            if name.endswith(suffix):
                return _action_section(pkg, name[:-len(suffix)], index, dirs)
        if name.endswith('_FeedbackMessage'):
            base = name[:-len('_FeedbackMessage')]
            return (f'unique_identifier_msgs/UUID goal_id\n'
                    f'{pkg}/action/{base}_Feedback feedback\n')
    raise DefinitionError(f'cannot build a definition for {type_name}')


def _field_types(text: str) -> List[str]:
    """Non-primitive field types of a definition (constants skipped), as written."""
    out = []
    for line in text.splitlines():
        line = line.split('#', 1)[0].strip()
        if not line or re.match(r'^\S+\s+\w+\s*=', line):
            continue          # blank or a constant
        ftype = re.sub(r'\[[^\]]*\]$', '', line.split()[0])
        ftype = re.sub(r'<=\d+$', '', ftype)
        if ftype not in PRIMITIVES:
            out.append(ftype)
    return out


def _qualify(ftype: str, pkg: str) -> str:
    if ftype == 'Header':
        return 'std_msgs/msg/Header'
    parts = ftype.split('/')
    if len(parts) == 1:
        return f'{pkg}/msg/{ftype}'
    if len(parts) == 2:
        return f'{parts[0]}/msg/{parts[1]}'
    return ftype


def message_definition(type_name: str, dirs: Optional[List[Path]] = None) -> str:
    """The rosbag2-style ros2msg definition of type_name with every nested type appended.

    Raises:
        DefinitionError: a type's .msg/.action file cannot be found.
    """
    dirs = share_dirs() if dirs is None else dirs
    text = raw_definition(type_name, dirs)
    pkg = _split_type(type_name)[0]
    out = [text.rstrip('\n')]
    seen = set()
    queue = [_qualify(t, pkg) for t in _field_types(text)]
    while queue:
        full = queue.pop(0)
        if full in seen:
            continue
        seen.add(full)
        sub_text = raw_definition(full, dirs)
        p2, s2, n2 = _split_type(full)
        short = f'{p2}/{n2}' if s2 == 'msg' else f'{p2}/{s2}/{n2}'
        out.append(f'{_SEPARATOR}\nMSG: {short}\n{sub_text.rstrip(chr(10))}')
        queue += [_qualify(t, p2) for t in _field_types(sub_text)]
    return '\n'.join(out) + '\n'


class McapRecorderFile:
    """An MCAP file (ros2 profile) taking serialised CDR messages per topic.

    Args:
        path: output file (.mcap), its folder is created.
    """

    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, 'wb')
        self._writer = Writer(self._fh, compression=CompressionType.ZSTD)
        self._writer.start(profile='ros2', library='humanoid_inspection')
        self._schemas: Dict[str, int] = {}
        self._channels: Dict[str, int] = {}
        self.skipped: Dict[str, str] = {}
        self.counts: Dict[str, int] = {}
        self._closed = False

    def add_topic(self, topic: str, type_name: str) -> bool:
        """Register a topic; False (and the reason in .skipped) if its type has no definition."""
        if topic in self._channels:
            return True
        if type_name not in self._schemas:
            try:
                text = message_definition(type_name)
            except DefinitionError as exc:
                self.skipped[topic] = str(exc)
                return False
            self._schemas[type_name] = self._writer.register_schema(
                name=type_name, encoding='ros2msg', data=text.encode())
        self._channels[topic] = self._writer.register_channel(
            topic=topic, message_encoding='cdr', schema_id=self._schemas[type_name])
        self.counts[topic] = 0
        return True

    def write(self, topic: str, data: bytes, log_time_ns: Optional[int] = None,
              publish_time_ns: Optional[int] = None) -> None:
        """Append one serialised message of a registered topic."""
        if self._closed or topic not in self._channels:
            return
        now = time.time_ns() if log_time_ns is None else int(log_time_ns)
        self._writer.add_message(channel_id=self._channels[topic], log_time=now, data=data,
                                 publish_time=now if publish_time_ns is None
                                 else int(publish_time_ns),
                                 sequence=self.counts[topic])
        self.counts[topic] += 1

    def close(self) -> None:
        """Finish the file (summary, index)."""
        if not self._closed:
            self._closed = True
            self._writer.finish()
            self._fh.close()
